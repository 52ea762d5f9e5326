"""The first real proof: a private OVS-DPDK, a dpdkvhostuserclient port, and testpmd connecting to it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require_root
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.lab.ovs import PMD_MAXSLEEP_ENV, PrivateOvs, pid_alive
from vhostplug.lab.testpmd import Testpmd
from vhostplug.model import Attachment
from vhostplug_testsupport.bridges import delete_bridge_if_ours

pytestmark = pytest.mark.ovs  # PrivateOvs of its own


def test_private_ovs_is_initialised(private_ovs: PrivateOvs) -> None:
    status = private_ovs.status()
    assert status["dpdk_initialized"] is True
    assert Path(status["ovsdb"]).is_socket()
    assert status["pid_ovsdb"] and status["pid_vswitchd"]
    assert not str(private_ovs.run_dir).startswith("/var/run/openvswitch")
    rows = ovsdb_rpc.select(private_ovs.endpoint, "Open_vSwitch", columns=["other_config"])
    other = ovsdb_rpc.ovs_map(rows[0]["other_config"])
    assert "--no-huge" in other["dpdk-extra"] and other["pmd-cpu-mask"] == "0x2"
    assert other["pmd-maxsleep"] == os.environ[PMD_MAXSLEEP_ENV]  # tests/conftest.py


def _pmd_cpu_s(pid: int) -> float:
    """CPU time of ovs-vswitchd's PMD threads (time on the CPU only: schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().startswith("pmd"):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def test_an_idle_pmd_with_a_port_sleeps_instead_of_spinning(private_ovs: PrivateOvs, short_dir: Path, unique: str) -> None:
    """With a port and no traffic the PMD would poll its core flat out; with pmd-maxsleep it leaves it to others."""
    dp = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir)
    att = Attachment(f"idle{unique}", "net1", f"vhi{unique}", short_dir, "vhu.sock", bridge=f"bri{unique}")
    pid = private_ovs.pids()[1]
    assert pid
    try:
        dp.attach(att)
        deadline = time.monotonic() + 10
        while _pmd_cpu_s(pid) == 0.0 and time.monotonic() < deadline:  # the PMD thread exists once a port has an rxq
            time.sleep(0.05)
        t0, c0 = time.monotonic(), _pmd_cpu_s(pid)
        time.sleep(1.0)  # the measurement window itself
        share = (_pmd_cpu_s(pid) - c0) / (time.monotonic() - t0)
        assert share < 0.2, f"the idle PMD used {share:.0%} of its core with pmd-maxsleep set"
    finally:
        dp.detach(att.port_name)
        delete_bridge_if_ours(dp.endpoint, att.bridge)
        dp.close()


def test_testpmd_connects_to_dpdkvhostuserclient_port(private_ovs: PrivateOvs, short_dir: Path, unique: str) -> None:
    dp = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir)
    sock = short_dir / "vhu.sock"
    att = Attachment(f"proof{unique}", "net1", f"vhp{unique}", short_dir, "vhu.sock", bridge=f"brp{unique}")
    try:
        port = dp.attach(att)
        assert port.ovs_type == "dpdkvhostuserclient"
        assert port.socket_path == str(sock)
        assert not port.connected
        with Testpmd([f"net_virtio_user0,path={sock},server=1"], file_prefix=f"proof{unique}") as app:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                seen = dp.get_port(att.port_name)
                assert seen is not None
                if seen.connected:
                    break
                time.sleep(0.2)
            assert seen.connected, f"OVS never reported the vhost-user port connected: {seen.status}"
            assert seen.status.get("status") == "connected"
            app.wait_link_up(0)
        assert not (Path("/var/run/dpdk") / f"proof{unique}").exists()
    finally:
        dp.detach(att.port_name)
        delete_bridge_if_ours(dp.endpoint, att.bridge)
        dp.close()
    assert not Path(f"/sys/class/net/{att.bridge}").exists()


def test_two_private_ovs_instances_run_at_once(private_ovs: PrivateOvs, short_dir: Path, unique: str) -> None:
    """Each instance's netdev datapath ('ovs-netdev' tap) lives in its own network namespace."""
    require_root()
    other = PrivateOvs(Path(f"/tmp/vhp-two-{unique}"))
    other.start()
    dps = [OvsDataplane(o.endpoint, ovs_rundir=o.run_dir) for o in (private_ovs, other)]
    try:
        for i, dp in enumerate(dps):
            port = dp.attach(
                Attachment(f"two{i}", "net1", f"vht{i}{unique}", short_dir, f"s{i}", bridge=f"brt{unique}")
            )
            assert port.ofport and port.ofport > 0
    finally:
        for i, dp in enumerate(dps):
            dp.detach(f"vht{i}{unique}")
            delete_bridge_if_ours(dp.endpoint, f"brt{unique}")
            dp.close()
        other.stop()
        os.rmdir(other.run_dir)


def test_stop_leaves_nothing(unique: str) -> None:
    require_root()
    run_dir = Path(f"/tmp/vhp-stop-{unique}")
    ovs = PrivateOvs(run_dir)
    ovs.start()
    pids = ovs.pids()
    dp = OvsDataplane(ovs.endpoint, ovs_rundir=run_dir)
    dp.attach(Attachment("c", "net1", f"vhs{unique}", run_dir, "s.sock", bridge=f"brs{unique}"))
    dp.close()
    in_ns = ["ip", "netns", "exec", ovs.netns, "ip", "-br", "link"]
    assert f"brs{unique}" in subprocess.run(in_ns, capture_output=True, text=True, check=True).stdout
    assert not Path(f"/sys/class/net/brs{unique}").exists(), "the bridge's tap must not be on the host"
    done = ovs.stop()
    for pid in pids:
        assert pid is not None and not pid_alive(pid)  # a zombie of a non-reaping PID 1 is not a process left
    assert not ovs.dpdk_runtime_dir.exists()
    assert not Path(f"/var/run/netns/{ovs.netns}").exists(), f"the network namespace was left behind: {done}"
    assert list(run_dir.iterdir()) == []
    os.rmdir(run_dir)


def test_stop_after_crash_cleans_stale_state(unique: str) -> None:
    require_root()
    run_dir = Path(f"/tmp/vhp-crash-{unique}")
    ovs = PrivateOvs(run_dir)
    ovs.start()
    ovs_pid, vsw_pid = ovs.pids()
    assert ovs_pid and vsw_pid
    os.kill(vsw_pid, 9)
    os.kill(ovs_pid, 9)
    time.sleep(0.2)
    again = PrivateOvs(run_dir)  # a new process knows only the folder
    assert again.pids() == (None, None)
    again.start()  # harmless after a crash: cleans and starts
    assert again.is_running()
    again.start()  # and harmless when already up
    assert again.pids()[1] != vsw_pid
    again.stop()
    assert list(run_dir.iterdir()) == []
    os.rmdir(run_dir)
