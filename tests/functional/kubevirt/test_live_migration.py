"""Live migration on one host: a source and a target QEMU, each in its own mount namespace where the same stable
socket path (``<links>/net1/vhu.sock``, as the sidecar writes it) leads to its own device folder and OVS port. The
guest pings a testpmd (``icmpecho``) through the private OVS-DPDK before, during and after a QMP migration."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import require_root
from vhostplug.lab.migration import MigrationError, MigrationLab
from vhostplug.lab.ovs import PrivateOvs


def test_live_migration_keeps_pinging_through_the_target_port(
    private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    require_root()
    # Rarely (about 1 run in 14 here) the TCG guest's NIC stays silent after the switch-over (vhost-user with
    # INTx, `vectors=0`, is a lab-only QEMU 7.2/TCG workaround). A fresh lab is tried once more; every assertion
    # below holds for the attempt that is judged.
    for attempt, folder in enumerate((short_dir / "1", short_dir / "2")):
        folder.mkdir()
        try:
            _migrate_and_check(private_ovs, folder, f"{unique}{attempt}")
            return
        except MigrationError as exc:
            if attempt == 1:
                raise
            print(f"\nfirst live migration attempt failed ({exc}); trying once more with a fresh lab")


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

        run = lab.run(f"unix:{short_dir}/mig.sock")

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
