"""The lab migration scenario: a source VM pinging a testpmd through a private OVS-DPDK bridge, migrated over QMP
(:func:`migrate`) to a target VM, with the ping gap, QMP's downtime and the ports' counters measured
(:class:`MigrationLab`, shared by the functional test and ``bench/migration_downtime.py``)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhostplug.lab import ovsdb
from vhostplug.lab.migration import MigrationError
from vhostplug.lab.migration.counters import port_counters
from vhostplug.lab.migration.pings import PingWatch
from vhostplug.lab.migration.qemu import SOCKET_NAME, LabQemu


@dataclass(frozen=True)
class MigrationResult:
    """Timings of one migration: host wall times, QMP's own figures (ms) and the final status."""

    started: float
    completed: float
    status: str
    qmp_downtime_ms: int | None
    qmp_total_ms: int | None
    qmp_setup_ms: int | None


def migrate(
    source: LabQemu,
    target: LabQemu,
    uri: str,
    downtime_limit_ms: int = 100,
    max_bandwidth: int = 4 << 30,
    timeout: float = 120.0,
) -> MigrationResult:
    """Precopy migration over QMP: ``migrate-incoming`` on the target, ``migrate`` on the source, poll to the end
    (every 5 ms: what follows the switch-over, the source pod going away, should not wait)."""
    target.execute("migrate-incoming", uri=uri)
    source.execute("migrate-set-parameters", **{"downtime-limit": downtime_limit_ms, "max-bandwidth": max_bandwidth})
    started = time.monotonic()
    source.execute("migrate", uri=uri)
    deadline = started + timeout
    while True:
        info = source.execute("query-migrate")
        status = str(info.get("status", ""))
        if status == "completed":
            completed = time.monotonic()
            break
        if status in ("failed", "cancelled"):
            raise MigrationError(
                f"migration {status}: {info.get('error-desc', info)}; target log:\n{target.log_tail()}"
            )
        if time.monotonic() > deadline:
            with contextlib.suppress(MigrationError):
                source.execute("migrate_cancel")
            raise MigrationError(f"migration not done after {timeout:.0f}s: {info}")
        time.sleep(0.005)
    # the target resumes on its own (autostart) once the stream is in; the source may say finish-migrate a moment
    # after query-migrate said completed, then postmigrate (what the callers check)
    deadline = time.monotonic() + 30
    while (st := target.status()) != "running":
        if time.monotonic() > deadline:
            raise MigrationError(f"target is {st!r} after the migration, not running")
        time.sleep(0.005)
    deadline = time.monotonic() + 2
    while source.status() == "finish-migrate" and time.monotonic() < deadline:
        time.sleep(0.005)
    return MigrationResult(
        started=started,
        completed=completed,
        status=status,
        qmp_downtime_ms=info.get("downtime"),
        qmp_total_ms=info.get("total-time"),
        qmp_setup_ms=info.get("setup-time"),
    )


@dataclass
class MigrationRun:
    """What one lab live migration measured (seconds unless named ``_ms``)."""

    ping_gap_s: float
    lost_replies: int
    qmp_downtime_ms: int | None
    qmp_total_ms: int | None
    migration_s: float
    replies_before: int
    replies_after: int
    target_rx_growth: int
    source_rx_growth_after: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MigrationLab:
    """One source VM pinging a testpmd (``icmpecho``) through a private OVS-DPDK bridge, migrated to a target VM.

    Layout under ``root`` (short, e.g. ``/tmp/vhp-xxxx``): ``links/`` (the shared stable folder, overlaid per mount
    namespace), ``src/``, ``dst/`` (each QEMU's files and device folder ``dev/``), ``peer/`` (testpmd's socket).
    ``close`` removes every process, port and bridge it made; the caller removes ``root``.
    """

    def __init__(self, ovs_run_dir: Path, endpoint: str, root: Path, unique: str, interval: float = 0.05) -> None:
        from vhostplug.lab.testpmd import Testpmd

        self.ovs_run_dir = ovs_run_dir
        self.endpoint = endpoint
        self.root = root
        self.unique = unique[:6]
        self.bridge = f"brm{self.unique}"
        self.ports = {k: f"vm{k}{self.unique}" for k in ("src", "dst", "peer")}
        links = root / "links"
        cmdline = f"vhp.ip=10.78.0.1/24 vhp.peer=10.78.0.2 vhp.interval={interval}"
        mac = "02:78:00:00:00:01"
        self.source = LabQemu(f"vhp-src-{self.unique}", root / "src", links, mac, cmdline)
        self.target = LabQemu(f"vhp-dst-{self.unique}", root / "dst", links, mac, cmdline, incoming=True)
        (root / "peer").mkdir(parents=True, exist_ok=True)
        self.peer_socket = root / "peer" / SOCKET_NAME
        self.testpmd = Testpmd([f"net_virtio_user0,path={self.peer_socket},server=1"], file_prefix=f"vhpm{self.unique}")
        self.watch = PingWatch([self.source.console_log, self.target.console_log])
        self.bridge_made = False

    def _add_port(self, key: str, path: Path) -> None:
        ovsdb.add_vhost_client_ports(self.endpoint, self.bridge, {self.ports[key]: str(path)})
        self.bridge_made = True

    def _del_port(self, key: str) -> None:
        ovsdb.del_port(self.endpoint, self.bridge, self.ports[key])

    def counters(self) -> dict[str, tuple[int, int]]:
        return port_counters(self.ovs_run_dir, self.bridge)

    def rx(self, key: str) -> int:
        return self.counters().get(self.ports[key], (0, 0))[0]

    def boot(self, timeout: float = 120.0) -> None:
        """testpmd answering pings, the source VM booted and pinging through OVS, the target waiting for the stream."""
        from vhostplug.lab.vms import Console

        self._add_port("peer", self.peer_socket)  # testpmd (server=1) waits for OVS before its first prompt
        self.testpmd.start()
        self.testpmd.cmd("set fwd icmpecho")
        self.testpmd.wait_link_up()
        self.testpmd.cmd("start")
        self.source.start()
        self._add_port("src", self.source.real_socket)
        self.source.connect_qmp()
        self.watch.start()
        Console(self.source.console_log).wait_for(r"VHP-PING-OK", timeout)
        self.target.start()
        self._add_port("dst", self.target.real_socket)
        self.target.connect_qmp()

    def run(self, uri: str, settle: float = 2.0) -> MigrationRun:
        t0 = time.monotonic()
        self.watch.wait_replies(10, t0, 30)
        replies_before = self.watch.count_since(t0)
        res = migrate(self.source, self.target, uri)
        src_status = self.source.status()
        if src_status != "postmigrate":
            raise MigrationError(f"source is {src_status!r} after the migration, not postmigrate")
        # the source pod goes away: its QEMU quits and its port is deleted (CNI DEL)
        src_rx_at_end = self.rx("src")
        self.source.stop()
        src_rx_after = self.rx("src") - src_rx_at_end
        self._del_port("src")
        dst_rx0 = self.rx("dst")
        t1 = time.monotonic()
        self.watch.wait_replies(10, t1, 30)
        time.sleep(settle)
        gap, lost = self.watch.max_gap(res.started, time.monotonic())
        return MigrationRun(
            ping_gap_s=round(gap, 4),
            lost_replies=lost,
            qmp_downtime_ms=res.qmp_downtime_ms,
            qmp_total_ms=res.qmp_total_ms,
            migration_s=round(res.completed - res.started, 4),
            replies_before=replies_before,
            replies_after=self.watch.count_since(res.completed),
            target_rx_growth=self.rx("dst") - dst_rx0,
            source_rx_growth_after=src_rx_after,
        )

    def close(self) -> list[str]:
        """Stop everything this lab made, in reverse order; never raises."""
        done = []
        self.watch.stop()
        for vm in (self.target, self.source):
            with contextlib.suppress(Exception):
                vm.stop()
                done.append(f"stopped {vm.name}")
        with contextlib.suppress(Exception):
            self.testpmd.stop()
            done.append("stopped testpmd")
        if self.bridge_made:
            with contextlib.suppress(Exception):
                ovsdb.del_bridge(self.endpoint, self.bridge)
                done.append(f"deleted bridge {self.bridge}")
        return done

    def __enter__(self) -> MigrationLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
