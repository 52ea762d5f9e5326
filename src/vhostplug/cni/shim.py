#!/usr/bin/python3 -IS
"""The CNI plugin executable: standard library only, one request to the node agent over a unix socket.

Installed for runtimes as /opt/cni/bin/vhostplug (this very file, run with ``python3 -I -S``). It answers VERSION
itself and forwards every other verb as ``{"env": {CNI_*...}, "config": "<stdin>"}``; the agent answers
``{"exitCode", "stdout"}``. ADD waits a bounded time for the agent; DEL, CHECK, STATUS and GC never hang: when the
agent cannot be reached in time they fail with code 11 ("try again later").
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

SUPPORTED = ("0.4.0", "1.0.0", "1.1.0")
DEFAULT_AGENT_SOCKET = "/run/vhostplug/agent.sock"
# how long to keep trying to reach the agent, and how long the whole exchange may take, per verb
CONNECT_WAIT = {"ADD": 30.0, "DEL": 5.0, "CHECK": 5.0, "STATUS": 2.0, "GC": 5.0}
REPLY_WAIT = {"ADD": 120.0, "DEL": 60.0, "CHECK": 30.0, "STATUS": 10.0, "GC": 120.0}
MAX_REPLY = 16 * 1024 * 1024


def _emit(obj: dict[str, object], code: int) -> int:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    return code


def _error(version: str, code: int, msg: str, details: str = "") -> int:
    err: dict[str, object] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        err["details"] = details
    return _emit(err, 1)


def _connect(path: str, wait: float) -> socket.socket:
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def run(env: dict[str, str], stdin: bytes) -> int:
    command = env.get("CNI_COMMAND", "")
    text = stdin.decode("utf-8", "replace")
    conf: object = None
    try:
        conf = json.loads(text) if text.strip() else {}
    except ValueError:
        conf = None
    version = "1.1.0"
    if isinstance(conf, dict) and isinstance(conf.get("cniVersion"), str):
        version = conf["cniVersion"]
    if command == "VERSION":
        return _emit(
            {"cniVersion": version if version in SUPPORTED else "1.1.0", "supportedVersions": list(SUPPORTED)}, 0
        )
    if command not in CONNECT_WAIT:
        return _error(
            version, 4, f"CNI_COMMAND {command!r} is not supported", "expected ADD, DEL, CHECK, STATUS, GC or VERSION"
        )
    if not isinstance(conf, dict):
        return _error(version, 6, "network configuration on stdin is not a JSON object")
    agent = conf.get("agentSocket") or DEFAULT_AGENT_SOCKET
    if not isinstance(agent, str) or not agent.startswith("/") or "\0" in agent:
        return _error(version, 7, f"agentSocket {agent!r} must be an absolute path")
    request = json.dumps({"env": {k: v for k, v in env.items() if k.startswith("CNI_")}, "config": text}).encode()
    try:
        sock = _connect(agent, CONNECT_WAIT[command])
    except OSError as exc:
        msg = f"the vhostplug node agent is not reachable at {agent}"
        return _error(version, 11, msg, f"{exc.strerror or exc}; try again later")
    try:
        with sock:
            sock.settimeout(REPLY_WAIT[command])
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            size = 0
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_REPLY:
                    return _error(version, 5, "the node agent's reply is too large")
                chunks.append(chunk)
    except OSError as exc:
        return _error(version, 11, f"no answer from the vhostplug node agent at {agent}", f"{exc}; try again later")
    try:
        reply = json.loads(b"".join(chunks))
        code = int(reply["exitCode"])
        out = str(reply.get("stdout", ""))
    except (ValueError, KeyError, TypeError):
        return _error(version, 11, "the node agent gave no valid answer (did it restart?)", "try again later")
    if out:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
        sys.stdout.flush()
    if env.get("VHOSTPLUG_SHIM_TIMING"):  # for bench/cni_latency.py: the agent's own request-in to answer-out time
        sys.stderr.write(f"vhostplug-agent-ms={reply.get('agentMs')}\n")
    return code


def main() -> None:
    sys.exit(run(dict(os.environ), sys.stdin.buffer.read()))


if __name__ == "__main__":
    main()
