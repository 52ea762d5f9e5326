"""Is ovs-vswitchd alive and serving? Asked of the process itself, not of OVSDB's memory of it. And the few
unixctl commands vhostplug sends it (:func:`call`, :func:`fdb_show`, :func:`forget_mac`), over the same control socket.

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
from typing import Any

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


class UnixctlError(RuntimeError):
    """ovs-vswitchd could not be asked, or did not answer in time (the message says which and why)."""


def call(rundir: Path, commands: list[list[str]], timeout: float = 1.0) -> list[dict[str, Any]]:
    """Send ``commands`` (each ``[method, *params]``) in one write, as JSON-RPC requests the way ``ovs-appctl`` sends
    one, and return the replies in order. ovs-vswitchd reads requests that arrived together in one pass of its main
    loop, so no other work of the switch (flow revalidation) runs between them."""
    path = control_socket(rundir)
    if isinstance(path, str):
        raise UnixctlError(path)
    wire = "".join(json.dumps({"id": i, "method": c[0], "params": c[1:]}) for i, c in enumerate(commands))
    decoder = json.JSONDecoder()
    replies: list[dict[str, Any]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(wire.encode())
            buf = ""
            while len(replies) < len(commands):
                chunk = sock.recv(65536)
                if not chunk:
                    raise UnixctlError(f"ovs-vswitchd closed its control socket {path} without answering")
                buf += chunk.decode(errors="replace")
                while buf.strip() and len(replies) < len(commands):
                    try:
                        reply, end = decoder.raw_decode(buf.lstrip())
                    except ValueError:
                        break
                    buf = buf.lstrip()[end:]
                    replies.append(reply if isinstance(reply, dict) else {"error": f"not an object: {reply!r:.200}"})
        except TimeoutError:
            raise UnixctlError(
                f"ovs-vswitchd does not answer on {path} within {timeout:g}s (hung or overloaded)"
            ) from None
        except OSError as exc:
            raise UnixctlError(f"ovs-vswitchd is not serving: {path}: {exc.strerror or exc}") from exc
    return replies


def problem(rundir: Path, timeout: float = 1.0) -> str | None:
    """None when ovs-vswitchd answers on its control socket within ``timeout`` seconds, else why not."""
    try:
        (reply,) = call(rundir, [["version"]], timeout)
    except UnixctlError as exc:
        return str(exc)
    if reply.get("error"):
        return f"ovs-vswitchd answered {control_socket(rundir)} with an error: {reply!r:.200}"
    return None


def fdb_show(rundir: Path, bridge: str, timeout: float = 1.0) -> str:
    """``bridge``'s MAC table as ``fdb/show`` prints it (``port VLAN MAC Age`` rows); :class:`UnixctlError` when the
    switch could not be asked or answered with an error."""
    (reply,) = call(rundir, [["fdb/show", bridge]], timeout)
    if reply.get("error"):
        raise UnixctlError(f"fdb/show {bridge}: {str(reply['error']).strip()}")
    return str(reply.get("result") or "")


def forget_mac(rundir: Path, bridge: str, port: str, mac: str, vlan: int = 0, timeout: float = 2.0) -> str | None:
    """Make ``bridge`` forget where it learned ``mac`` (None when done, else why not), so that frames to it flood
    until the switch learns it again. For a VM that left ``port`` (live migration): OVS keeps the MAC behind the old
    port, and a move learned by a PMD does not wake ovs-vswitchd's main thread to re-point the datapath flows, so
    frames to the VM went into the dead port until something else woke the switch (docs/benchmarks.md).

    OVS 3.1's ``fdb/del`` removes static entries only: ``fdb/add`` first turns the learned entry (behind ``port``,
    or none) into a static one, and both requests go in one write, so the switch handles them in one pass. Should
    ``fdb/del`` fail after ``fdb/add`` did, the static entry is said in the answer and goes with ``port``'s removal."""
    try:
        add, delete = call(
            rundir, [["fdb/add", bridge, port, str(vlan), mac], ["fdb/del", bridge, str(vlan), mac]], timeout
        )
    except UnixctlError as exc:
        return str(exc)
    for what, reply in (("fdb/add", add), ("fdb/del", delete)):
        if reply.get("error"):
            return f"{what} {bridge} {mac}: {str(reply['error']).strip()}"
    return None
