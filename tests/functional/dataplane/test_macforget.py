"""The agent's backend watching its ports' links (:mod:`vhostplug.dataplane.macforget`), on the session's private
OVS with a real vhost-user peer (testpmd): when a port's link comes up and when it goes down, the bridge forgets the
MAC the port's record names, in the port's VLAN; a MAC the bridge learned from frames behind the port is gone once
the peer left; a backend without it, and a port of someone else's, change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import require_root
from vhostplug.dataplane import ovsdb_rpc, vswitchd
from vhostplug.dataplane.macforget import LinkChange
from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.testpmd import Testpmd
from vhostplug.model import Attachment
from vhostplug_testsupport.bridges import delete_bridge_if_ours

pytestmark = pytest.mark.ovs

MAC = "02:5e:00:00:0f:01"


def _fdb(rundir: Path, bridge: str) -> str:
    return vswitchd.fdb_show(rundir, bridge, timeout=5)


def _wait(what: str, ok: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.05)


def _link(dp: OvsDataplane, port: str) -> str | None:
    seen = dp.get_port(port)
    return seen.link_state if seen is not None else None


def test_link_up_and_down_make_the_bridge_forget_the_ports_mac(
    private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    require_root()
    dp = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir, forget_macs=True)
    assert dp.forgetter is not None
    sock = short_dir / "vhu.sock"
    att = Attachment(
        f"mf{unique}", "net1", f"vhm{unique}", short_dir, "vhu.sock", bridge=f"brm{unique}", mac=MAC, vlan=7
    )
    try:
        dp.watch()
        dp.attach(att)
        assert dp.forgetter.done == []  # a port made: no link change yet
        app = Testpmd([f"net_virtio_user0,path={sock},server=1,mac={MAC}"], file_prefix=f"mf{unique}").start()
        try:
            app.wait_link_up(timeout=30)
            _wait("the port's link up seen and acted on", lambda: len(dp.forgetter.done) >= 1)  # type: ignore[union-attr]
            assert dp.forgetter.done[0] == (LinkChange(att.port_name, att.bridge, MAC, 7, "up"), None)
            # frames from the pod's MAC: the bridge learns it behind the port, in the port's VLAN
            app.cmd("set fwd txonly")
            app.cmd("start")
            _wait("the bridge learned the pod's MAC", lambda: MAC in _fdb(private_ovs.run_dir, att.bridge))
            app.cmd("stop")
            learned = [line.split() for line in _fdb(private_ovs.run_dir, att.bridge).splitlines() if MAC in line]
            assert [row[1] for row in learned] == ["7"]
        finally:
            app.stop()  # the peer leaves: the port's link goes down
        _wait("the port's link down seen and acted on", lambda: len(dp.forgetter.done) >= 2)  # type: ignore[union-attr]
        assert dp.forgetter.done[1] == (LinkChange(att.port_name, att.bridge, MAC, 7, "down"), None)
        assert MAC not in _fdb(private_ovs.run_dir, att.bridge)  # forgotten: frames to it flood again
        # nothing static left behind by the fdb/add + fdb/del pair
        (stats,) = vswitchd.call(private_ovs.run_dir, [["fdb/stats-show", att.bridge]], timeout=5)
        assert "Current static MAC entries in the table : 0" in str(stats.get("result"))
    finally:
        dp.detach(att.port_name)
        delete_bridge_if_ours(dp.endpoint, att.bridge)
        dp.close()


def test_without_forgetting_or_for_a_port_not_ours_nothing_is_asked(
    private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    require_root()
    quiet = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir)  # the default: no watcher
    watcher = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir, forget_macs=True)
    assert quiet.forgetter is None and watcher.forgetter is not None
    sock = short_dir / "vhu.sock"
    att = Attachment(f"nf{unique}", "net1", f"vhn{unique}", short_dir, "vhu.sock", bridge=f"brn{unique}", mac=MAC)
    try:
        watcher.watch()
        quiet.attach(att)
        # someone else's port on the bridge: its record is not ours (no vhostplug attachment key)
        uuid = ovsdb_rpc.select(private_ovs.endpoint, "Interface", [["name", "==", att.port_name]], ["_uuid"])[0]
        ovsdb_rpc.transact(
            private_ovs.endpoint,
            [
                {
                    "op": "update",
                    "table": "Interface",
                    "where": [["_uuid", "==", uuid["_uuid"]]],
                    "row": {"external_ids": ["map", [["attached-mac", MAC]]]},
                }
            ],
        )
        with Testpmd([f"net_virtio_user0,path={sock},server=1,mac={MAC}"], file_prefix=f"nf{unique}") as app:
            app.wait_link_up(timeout=30)
            _wait("OVSDB says the link is up", lambda: _link(quiet, att.port_name) == "up")
        _wait("OVSDB says the link is down", lambda: _link(quiet, att.port_name) == "down")
        time.sleep(0.3)  # what a watcher would have done by now
        assert watcher.forgetter.done == []
    finally:
        quiet.detach(att.port_name)
        delete_bridge_if_ours(quiet.endpoint, att.bridge)
        quiet.close()
        watcher.close()
