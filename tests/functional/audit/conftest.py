"""A real libvirtd (started only when none runs, stopped only if we started it) and raw-OVSDB vhost-user ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab.ovs import PrivateOvs

URI = "qemu:///system"
DAEMONS = (("virtlogd", Path("/run/virtlogd.pid"), Path("/run/libvirt/virtlogd-sock")),
           ("libvirtd", Path("/run/libvirtd.pid"), Path("/run/libvirt/libvirt-sock")))  # fmt: skip


def _can_connect() -> bool:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        libvirt.open(URI).close()
    except libvirt.libvirtError:
        return False
    return True


def _pid_of(pidfile: Path, name: str) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError):
        return None
    return pid if os.path.basename(cmd) == name else None


@pytest.fixture(scope="module")
def libvirt_uri() -> Iterator[str]:
    """qemu:///system served by a libvirtd: an existing one, or one we start (and stop) ourselves."""
    require_root()
    started: list[tuple[str, int]] = []
    if not _can_connect():
        for name, pidfile, sock in DAEMONS:
            if sock.exists() and _pid_of(pidfile, name):
                continue
            subprocess.run([name, "-d"], check=True, capture_output=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (sock.exists() and _pid_of(pidfile, name)):
                time.sleep(0.1)
            pid = _pid_of(pidfile, name)
            assert pid is not None, f"{name} -d did not come up"
            started.append((name, pid))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _can_connect():
            time.sleep(0.2)
        assert _can_connect(), "libvirtd started but qemu:///system does not answer"
    try:
        yield URI
    finally:
        for _name, pid in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)


class OvsPorts:
    """A netdev bridge and vhost-user ports made with raw OVSDB operations; :meth:`cleanup` removes them all."""

    def __init__(self, ovs: PrivateOvs, bridge: str) -> None:
        self.ovs = ovs
        self.endpoint = ovs.endpoint
        self.bridge = bridge
        ovsdb_rpc.transact(
            self.endpoint,
            [
                {"op": "insert", "table": "Bridge", "uuid-name": "br",
                 "row": {"name": bridge, "datapath_type": "netdev"}},
                {"op": "mutate", "table": "Open_vSwitch", "where": [],
                 "mutations": [["bridges", "insert", ["set", [["named-uuid", "br"]]]]]},
            ],
        )  # fmt: skip

    def add(self, name: str, ovs_type: str, options: dict[str, str] | None = None) -> None:
        iface: dict[str, Any] = {"name": name, "type": ovs_type}
        if options:
            iface["options"] = ["map", sorted(options.items())]
        ovsdb_rpc.transact(
            self.endpoint,
            [
                {"op": "insert", "table": "Interface", "uuid-name": "i", "row": iface},
                {"op": "insert", "table": "Port", "uuid-name": "p",
                 "row": {"name": name, "interfaces": ["named-uuid", "i"]}},
                {"op": "mutate", "table": "Bridge", "where": [["name", "==", self.bridge]],
                 "mutations": [["ports", "insert", ["set", [["named-uuid", "p"]]]]]},
            ],
        )  # fmt: skip

    def interface(self, name: str) -> dict[str, Any]:
        rows = ovsdb_rpc.select(self.endpoint, "Interface", where=[["name", "==", name]], columns=["type", "options"])
        assert rows, f"no interface {name}"
        return {"type": rows[0]["type"], "options": ovsdb_rpc.ovs_map(rows[0]["options"])}

    def cleanup(self) -> None:
        rows = ovsdb_rpc.select(self.endpoint, "Bridge", where=[["name", "==", self.bridge]], columns=["_uuid"])
        if rows:
            ovsdb_rpc.transact(
                self.endpoint,
                [{"op": "mutate", "table": "Open_vSwitch", "where": [],
                  "mutations": [["bridges", "delete", ["set", [rows[0]["_uuid"]]]]]}],
            )  # fmt: skip
        time.sleep(0.3)
        left = ovsdb_rpc.select(self.endpoint, "Bridge", where=[["name", "==", self.bridge]], columns=["name"])
        assert left == [], "bridge still in OVSDB after cleanup"
