"""Live migration on one host: a source and a target QEMU, each in its own mount namespace where the same stable
socket path (``<links>/net1/vhu.sock``, as the sidecar writes it) leads to its own device folder and OVS port. The
guest pings a testpmd (``icmpecho``) through the private OVS-DPDK before, during and after a QMP migration."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from tests.conftest import require_root
from vhostplug.lab.migration import MigrationError
from vhostplug.lab.migration.qemu import LabQemu
from vhostplug.lab.migration.scenario import MigrationLab
from vhostplug.lab.ovs import PrivateOvs

#: The one failure tolerated, and only once per run: now and then (1 run in 14 here; 1 in 5-10 of the two-node
#: bench's cross-node runs) the guest's NIC stays silent after the switch-over: the target runs, the source is gone,
#: and not one ping reply comes back. Seen on the target's console (2026-12-05): the guest's virtio-net driver finds
#: an entry in its TX used ring that it never made (``output.0:id 0 is not a head!``), gives the queue up, and ping
#: locks up; the target port saw only QEMU's RARP announces. Or the guest kernel dies on the corrupted ring (``BUG:``
#: in ``receive_buf``, ``Kernel panic``), and the target QEMU, started with ``-no-reboot``, exits. A fault of the
#: vhost-user migration between QEMU 7.2 and OVS 3.1 / DPDK 22.11 here (the lab's guest uses INTx, ``vectors=0``, a
#: QEMU 7.2/TCG workaround), not of a switch.
SILENT_AFTER_SWITCHOVER = re.compile(r"only 0 of \d+ ping replies")
ATTEMPTS = 2


def guest_broke_after_switchover(target: LabQemu) -> bool:
    """The target of a silent run is that case: still running, or gone after its guest kernel panicked (its console
    says so). Any other end of the target QEMU is not."""
    if target.alive():
        return target.status() == "running"
    console = target.console_log.read_text(errors="replace") if target.console_log.exists() else ""
    return "Kernel panic" in console


class SilentNic(Exception):
    """The known flake above, told apart from every other MigrationError (which fails the test at once)."""


class ToleratedFlake(UserWarning):
    """Shown in pytest's warnings summary: a run that needed its second attempt says so, with the count."""


def test_live_migration_keeps_pinging_through_the_target_port(
    private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    require_root()
    silent: list[str] = []
    for attempt in range(ATTEMPTS):
        folder = short_dir / str(attempt + 1)
        folder.mkdir()
        try:
            _migrate_and_check(private_ovs, folder, f"{unique}{attempt}")
            break
        except SilentNic as exc:
            silent.append(str(exc))
    else:
        raise AssertionError(
            f"the guest's NIC stayed silent after the switch-over in all {ATTEMPTS} attempts: {silent}"
        )
    if silent:  # counted, not hidden: every judged assertion held for the last attempt
        warnings.warn(
            ToleratedFlake(
                f"live migration: {len(silent)} of {len(silent) + 1} attempts hit the known silent-NIC flake "
                f"(tolerated once per run): {silent[0]}"
            ),
            stacklevel=1,
        )


def _migrate_and_check(private_ovs: PrivateOvs, short_dir: Path, unique: str) -> None:
    lab = MigrationLab(private_ovs.run_dir, private_ovs.endpoint, short_dir, unique)
    try:
        lab.boot()
        src, dst = lab.source, lab.target
        # one stable path in both command lines, two different host folders behind it (one per mount namespace)
        assert src.stable_socket == dst.stable_socket == f"{short_dir}/links/net1/vhu.sock"
        for vm in (src, dst):
            assert os.readlink(f"/proc/{vm.pid}/root{short_dir}/links/net1") == str(vm.device_dir)
            assert vm.real_socket.is_socket()
        assert list((short_dir / "links").iterdir()) == []  # the host itself sees no link: each lives in its ns
        assert dst.status() == "inmigrate"
        assert lab.rx("src") > 0  # pings answered before, through the source port

        try:
            run = lab.run(f"unix:{short_dir}/mig.sock")
        except MigrationError as exc:
            if SILENT_AFTER_SWITCHOVER.match(str(exc)) and not src.alive() and guest_broke_after_switchover(dst):
                raise SilentNic(str(exc)) from exc
            raise

        assert run.replies_before >= 10
        assert not src.alive()
        assert dst.status() == "running"
        assert run.replies_after >= 10  # pings answered after the migration ...
        assert run.target_rx_growth >= 10  # ... through the target's OVS port
        assert run.source_rx_growth_after == 0
        assert lab.ports["src"] not in lab.counters()  # the source pod's port is gone
        assert run.qmp_downtime_ms is not None and run.qmp_downtime_ms >= 0
        assert run.ping_gap_s > 0
        print(
            f"\nlive migration: ping gap {run.ping_gap_s * 1000:.0f} ms, QMP downtime {run.qmp_downtime_ms} ms, "
            f"{run.lost_replies} replies lost, migration {run.migration_s:.2f} s"
        )
    finally:
        lab.close()
    assert not src.alive() and not dst.alive()
    assert not Path(f"/var/run/dpdk/{lab.testpmd.file_prefix}").exists()
