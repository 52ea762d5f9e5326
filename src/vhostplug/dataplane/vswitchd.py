"""Is ovs-vswitchd alive and serving? Asked of the process itself, not of OVSDB's memory of it.

OVSDB keeps ``dpdk_initialized=true`` after ovs-vswitchd died, so readiness asks the switch: its pidfile in the OVS
run folder names the process, and its unixctl control socket (``ovs-vswitchd.<pid>.ctl``, or ``ovs-vswitchd.ctl``
where it was started with ``--unixctl`` so) must answer a ``version`` request (JSON-RPC, as ``ovs-appctl`` sends it)
within a short timeout. A dead switch refuses the connection (its socket file stays behind); a hung one does not
answer. Nothing here reads /proc: the agent's container has a PID namespace of its own.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

PIDFILE = "ovs-vswitchd.pid"


def control_socket(rundir: Path) -> Path | str:
    """The control socket of the ovs-vswitchd the pidfile names; a reason (str) when there is none."""
    try:
        pid = int((rundir / PIDFILE).read_text().strip())
    except FileNotFoundError:
        return f"ovs-vswitchd is not running: no {rundir / PIDFILE}"
    except (OSError, ValueError) as exc:
        return f"cannot read {rundir / PIDFILE}: {exc}"
    # no /proc/<pid> check: the agent runs in a PID namespace of its own (a DaemonSet pod without hostPID), where
    # ovs-vswitchd's pid means nothing; a dead process's control socket refuses the connection instead
    for name in (f"ovs-vswitchd.{pid}.ctl", "ovs-vswitchd.ctl"):
        if (rundir / name).exists():
            return rundir / name
    return f"ovs-vswitchd (pid {pid}) has no control socket in {rundir}"


def problem(rundir: Path, timeout: float = 1.0) -> str | None:
    """None when ovs-vswitchd answers on its control socket within ``timeout`` seconds, else why not."""
    path = control_socket(rundir)
    if isinstance(path, str):
        return path
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps({"id": 0, "method": "version", "params": []}).encode())
            buf = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return f"ovs-vswitchd closed its control socket {path} without answering"
                buf += chunk
                try:
                    reply = json.loads(buf)
                except ValueError:
                    continue
                break
        except TimeoutError:
            return f"ovs-vswitchd does not answer on {path} within {timeout:g}s (hung or overloaded)"
        except OSError as exc:
            return f"ovs-vswitchd is not serving: {path}: {exc.strerror or exc}"
    if not isinstance(reply, dict) or reply.get("error"):
        return f"ovs-vswitchd answered {path} with an error: {reply!r:.200}"
    return None
