"""Live migration on one host: a source and a target QEMU, each in its own mount namespace where the same stable
socket path (``<links>/net1/vhu.sock``, as the sidecar writes it) leads to its own device folder and OVS port. The
guest pings a testpmd (``icmpecho``) through the private OVS-DPDK before, during and after a QMP migration."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import require_root
from vhostplug.lab.migration import MigrationLab
from vhostplug.lab.ovs import PrivateOvs


def test_live_migration_keeps_pinging_through_the_target_port(
    private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    require_root()
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
