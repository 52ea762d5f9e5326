#!/usr/bin/python3 -IS
"""The CNI plugin executable: standard library only, one request to the node agent over a unix socket.

Installed for runtimes as /opt/cni/bin/vhostplug (this very file, run with ``python3 -I -S``). It answers VERSION
itself and forwards every other verb to the agent; ADD waits a bounded time for the agent; DEL, CHECK, STATUS and GC
never hang: when the agent cannot be reached in time they fail with code 11 ("try again later").

The shim is exec'd once per verb, so its own start-up is part of every pod's attach time. It therefore parses no
JSON on the happy path: the netconf goes to the agent byte for byte (the agent validates all of it) and only the
top-level ``agentSocket`` is picked out, by :func:`top_level_strings`. `json` (and its `re`, ~3 ms) is imported only
on the cold paths (VERSION, errors, netconfs that scanner is not sure about); `socket` is used through its C half
`_socket` where there is one, which skips the ~6 ms that `socket`'s own enum and selectors imports cost each exec.

The wire format to the agent is :mod:`vhostplug.cni.wire`'s (inlined into the installed executable).
"""

from __future__ import annotations

import posix  # `os` minus its start-up imports (~1.5 ms each exec): write, getuid, environ (bytes), _exit
import sys
import time

from vhostplug.cni.wire import MAX_REPLY, MAX_REQUEST, decode_reply, encode_request, too_large  # install_shim inlines

try:  # CPython: the C half of the standard library's `socket`, the same calls without its start-up imports
    import _socket as _net
except ImportError:  # another Python
    import socket as _net  # type: ignore[no-redef]

SUPPORTED = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")  # = spec.SUPPORTED_VERSIONS
DEFAULT_AGENT_SOCKET = "/run/vhostplug/agent.sock"
# how long to keep trying to reach the agent, and how long the whole exchange may take, per verb
CONNECT_WAIT = {"ADD": 30.0, "DEL": 5.0, "CHECK": 5.0, "STATUS": 2.0, "GC": 5.0}
REPLY_WAIT = {"ADD": 120.0, "DEL": 60.0, "CHECK": 30.0, "STATUS": 10.0, "GC": 120.0}
_WS = " \t\r\n"


def top_level_strings(text: str, wanted: tuple[str, ...]) -> dict[str, object] | None:
    """The plain string values of the ``wanted`` top-level keys of a JSON object, read without the `json` module.

    Returns None whenever the answer is not certain (not an object, unbalanced, an escape in a top-level key, a
    wanted key whose value is not a string or holds an escape): the caller then decodes with `json`. Nested objects and arrays are skipped; a
    repeated key keeps its last value, as `json.loads` does."""
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    if i == n or text[i] != "{":
        return None
    found: dict[str, object] = {}
    depth = 0
    expect_key = False  # at depth 1: the next string is a key
    key: str | None = None  # at depth 1: the key whose value comes after the ':'
    after_colon = False
    while i < n:
        c = text[i]
        if c == '"':
            end = i + 1
            while True:  # the closing quote is the first one not escaped by an odd run of backslashes
                end = text.find('"', end)
                if end < 0:
                    return None
                back = end - 1
                while text[back] == "\\":
                    back -= 1
                if (end - 1 - back) % 2 == 0:
                    break
                end += 1
            if depth == 1:
                raw = text[i + 1 : end]
                if expect_key:
                    if "\\" in raw:  # an escaped key might spell a wanted one
                        return None
                    key, expect_key = raw, False
                elif after_colon:
                    if key is not None and key in wanted:
                        if "\\" in raw:
                            return None
                        found[key] = raw
                    after_colon = False
            i = end + 1
            continue
        if c in _WS:
            i += 1
            continue
        if depth == 1 and after_colon:
            if key in wanted:  # a number, literal, object or array where we need a string
                return None
            after_colon = False
        if c in "{[":
            depth += 1
            expect_key = depth == 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return found if not text[i + 1 :].strip(_WS) else None
            if depth < 0:
                return None
        elif depth == 1 and c == ",":
            expect_key = True
        elif depth == 1 and c == ":":
            after_colon = True
        i += 1
    return None


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[posix.write(fd, view) :]


def _emit(obj: dict[str, object], code: int) -> int:
    import json  # cold path only

    _write(1, (json.dumps(obj) + "\n").encode())
    return code


def _error(version: str, code: int, msg: str, details: str = "") -> int:
    err: dict[str, object] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        err["details"] = details
    return _emit(err, 1)


def _slow_parse(text: str) -> dict[str, object] | tuple[str, str]:
    """The netconf decoded with `json` (cold path); (message, details) when it is not a JSON object."""
    import json

    what = "network configuration on stdin is not a JSON object"
    if not text.strip():
        return "no network configuration on stdin", "a CNI plugin reads its network configuration from stdin"
    try:
        conf = json.loads(text)
    except RecursionError:
        return what, "it is nested too deeply"
    except ValueError as exc:
        return what, f"not valid JSON: {exc}"
    return conf if isinstance(conf, dict) else (what, f"it is a JSON {type(conf).__name__}")


def _connect(path: str, wait: float) -> _net.socket:
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        sock = _net.socket(_net.AF_UNIX, _net.SOCK_STREAM)
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.connect(path)
            return sock
        except PermissionError:
            sock.close()
            raise
        except OSError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _exchange(sock: _net.socket, request: bytes, wait: float) -> bytes | None:
    """Send the request, read the whole answer; None when it is too large."""
    sock.settimeout(wait)
    sock.sendall(request)
    sock.shutdown(_net.SHUT_WR)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_REPLY:
            return None
        chunks.append(chunk)


def run(env: dict[bytes, bytes], stdin: bytes) -> int:
    command = env.get(b"CNI_COMMAND", b"").decode("utf-8", "replace")
    text = stdin.decode("utf-8", "replace")
    found = top_level_strings(text, ("agentSocket", "cniVersion")) if command != "VERSION" else None
    conf = found if found is not None else _slow_parse(text)
    asked = conf.get("cniVersion") if isinstance(conf, dict) else None
    version = asked if isinstance(asked, str) else "1.1.0"
    if command == "VERSION":
        return _emit(
            {"cniVersion": version if version in SUPPORTED else "1.1.0", "supportedVersions": list(SUPPORTED)}, 0
        )
    if command not in CONNECT_WAIT:
        return _error(
            version, 4, f"CNI_COMMAND {command!r} is not supported", "expected ADD, DEL, CHECK, STATUS, GC or VERSION"
        )
    if isinstance(conf, tuple):
        if command != "DEL":
            return _error(version, 6, *conf)
        # DEL works from what the agent stored at ADD: a config that broke since then must not strand the pod, so it
        # goes to the node's agent as it is (the agent drops what it cannot decode)
        conf = {}
    fallback = env.get(b"VHOSTPLUG_AGENT_SOCKET", b"").decode("utf-8", "replace")
    agent = conf.get("agentSocket") or fallback or DEFAULT_AGENT_SOCKET
    if not isinstance(agent, str) or not agent.startswith("/") or "\0" in agent:
        return _error(version, 7, f"agentSocket {agent!r} must be an absolute path")
    request = encode_request(env, stdin)
    if len(request) > MAX_REQUEST:
        refused = too_large(len(request))
        return _error(version, refused.code, refused.msg, refused.details)
    try:
        sock = _connect(agent, CONNECT_WAIT[command])
    except PermissionError as exc:  # EACCES / EPERM: waiting will not change who we run as
        return _error(
            version,
            5,
            f"permission denied connecting to the vhostplug node agent at {agent} (running as uid {posix.getuid()})",
            f"{exc.strerror or exc}; the agent's socket is root-only (0600): run the plugin as root, as runtimes do",
        )
    except OSError as exc:
        msg = f"the vhostplug node agent is not reachable at {agent}"
        return _error(version, 11, msg, f"{exc.strerror or exc}; try again later")
    try:
        reply = _exchange(sock, request, REPLY_WAIT[command])
    except OSError as exc:
        return _error(version, 11, f"no answer from the vhostplug node agent at {agent}", f"{exc}; try again later")
    finally:
        sock.close()
    if reply is None:
        return _error(version, 5, "the node agent's reply is too large")
    answer = decode_reply(reply)
    if answer is None:
        return _error(version, 11, "the node agent gave no valid answer (did it restart?)", "try again later")
    code, agent_ms, out = answer
    if out:
        _write(1, out if out.endswith(b"\n") else out + b"\n")
    if env.get(b"VHOSTPLUG_SHIM_TIMING"):  # for bench/cni_latency.py: the agent's own request-in to answer-out time
        _write(2, b"vhostplug-agent-ms=" + agent_ms + b"\n")
    return code


def main() -> None:
    code = run(dict(posix.environ), sys.stdin.buffer.read())
    posix._exit(code)  # everything went out through posix.write: skip the interpreter's teardown (~0.5 ms)


if __name__ == "__main__":
    main()
