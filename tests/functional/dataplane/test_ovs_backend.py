"""The OVS-DPDK backend against the private OVS: one transaction per attach, tags, modes, errors, two instances."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from vhostplug.dataplane import ovsdb_rpc
from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import EXTERNAL_ID_ATTACHMENT, Attachment, Mode, NetdevPort
from vhostplug.protocols import DataplaneError, DataplaneUnavailable
from vhostplug.vdpa import netdev
from vhostplug_testsupport.bridges import delete_bridge_if_ours


@pytest.fixture
def dp(private_ovs: PrivateOvs) -> OvsDataplane:
    d = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir)
    yield d
    for port in d.list_ports():
        d.detach(port.name)
    d.close()


def _att(unique: str, folder: Path, **kw: object) -> Attachment:
    base: dict[str, object] = {
        "container_id": f"ctr{unique}",
        "ifname": "net1",
        "port_name": f"vhb{unique}",
        "socket_dir": folder,
        "socket_name": "vhu.sock",
        "bridge": f"brb{unique}",
        "mac": "02:00:00:aa:bb:cc",
    }
    base.update(kw)
    return Attachment(**base)  # type: ignore[arg-type]


def test_attach_sets_everything_in_ovsdb(
    dp: OvsDataplane, private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    att = _att(unique, short_dir, vlan=42, mtu=1600, device_id="vu07")
    port = dp.attach(att)
    assert port.ofport and port.ofport > 0
    rows = ovsdb_rpc.select(private_ovs.endpoint, "Interface", [["name", "==", att.port_name]])
    assert len(rows) == 1
    iface = rows[0]
    assert iface["type"] == "dpdkvhostuserclient"
    assert ovsdb_rpc.ovs_map(iface["options"]) == {"vhost-server-path": str(short_dir / "vhu.sock")}
    assert iface["mtu_request"] == 1600
    ids = ovsdb_rpc.ovs_map(iface["external_ids"])
    assert ids[EXTERNAL_ID_ATTACHMENT] == f"ctr{unique}/net1"
    assert ids["vhostplug-device-id"] == "vu07"
    assert ids["attached-mac"] == "02:00:00:aa:bb:cc"
    assert ids["iface-status"] == "active" and ids["iface-id"]
    prow = ovsdb_rpc.select(private_ovs.endpoint, "Port", [["name", "==", att.port_name]])[0]
    assert prow["tag"] == 42
    brow = ovsdb_rpc.select(private_ovs.endpoint, "Bridge", [["name", "==", att.bridge]])[0]
    assert brow["datapath_type"] == "netdev"
    assert dp.attach(att) == dp.get_port(att.port_name)  # repeat: same port, no error
    assert dp.detach(att.port_name) is True
    assert dp.detach(att.port_name) is False
    assert delete_bridge_if_ours(dp.endpoint, att.bridge) is True


def test_client_mode_socket_is_in_vhost_sock_dir(dp: OvsDataplane, private_ovs: PrivateOvs, unique: str) -> None:
    att = _att(unique, Path("/nonexistent"), mode=Mode.CLIENT)
    port = dp.attach(att)
    assert port.ovs_type == "dpdkvhostuser"
    assert port.socket_path == str(private_ovs.vhost_sock_dir / att.port_name)
    assert Path(port.socket_path).is_socket()
    dp.detach(att.port_name)
    delete_bridge_if_ours(dp.endpoint, att.bridge)


def test_foreign_bridge_is_never_deleted_and_must_be_netdev(
    dp: OvsDataplane, private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    name = f"brf{unique}"
    ovsdb_rpc.transact(
        private_ovs.endpoint,
        [
            {"op": "insert", "table": "Bridge", "row": {"name": name}, "uuid-name": "b"},
            {
                "op": "mutate",
                "table": "Open_vSwitch",
                "where": [],
                "mutations": [["bridges", "insert", ["set", [["named-uuid", "b"]]]]],
            },
        ],
    )
    try:
        with pytest.raises(DataplaneError, match="datapath_type=netdev"):
            dp.attach(_att(unique, short_dir, bridge=name))
        assert dp.get_port(f"vhb{unique}") is None, "a failed attach left a port"
        assert delete_bridge_if_ours(dp.endpoint, name) is False
    finally:
        ovsdb_rpc.transact(
            private_ovs.endpoint,
            [{"op": "update", "table": "Open_vSwitch", "where": [], "row": {"bridges": ["set", []]}}],
        )


def test_port_name_owned_by_someone_else(dp: OvsDataplane, short_dir: Path, unique: str) -> None:
    dp.attach(_att(unique, short_dir))
    with pytest.raises(DataplaneError, match="already exists"):
        dp.attach(_att(unique, short_dir, container_id="other"))
    dp.detach(f"vhb{unique}")
    delete_bridge_if_ours(dp.endpoint, f"brb{unique}")


def test_two_instances_talk_to_their_own_ovs(dp: OvsDataplane, unique: str) -> None:
    """Regression: ovsdbapp keeps its connection on the class; a second backend must not reuse the first's."""
    dp.health()
    dp.list_ports()  # connect the first
    other = OvsDataplane("unix:/tmp/does-not-exist.sock")
    with pytest.raises(DataplaneUnavailable):
        other.list_ports()
    assert not other.health().reachable


def test_dead_ovs_is_unavailable(unique: str) -> None:
    d = OvsDataplane(f"unix:/tmp/vhp-nothing-{unique}.sock")
    h = d.health()
    assert not h.reachable and not h.ok and "cannot connect" in h.detail
    with pytest.raises(DataplaneUnavailable, match="cannot connect to OVSDB"):
        d.attach(_att(unique, Path("/tmp")))


def test_meanwhile_runs_after_the_commit_and_its_failure_removes_the_port(
    dp: OvsDataplane, private_ovs: PrivateOvs, short_dir: Path, unique: str
) -> None:
    att = _att(unique, short_dir)
    seen: list[int] = []

    def count_rows() -> None:  # the caller's work runs while ovs-vswitchd applies the committed row
        seen.append(len(ovsdb_rpc.select(private_ovs.endpoint, "Interface", [["name", "==", att.port_name]])))

    port = dp.attach(att, meanwhile=count_rows)
    assert seen == [1] and port.ofport and port.ofport > 0
    assert dp.detach(att.port_name)

    def fail() -> None:
        raise RuntimeError("IPAM said no")

    with pytest.raises(RuntimeError, match="IPAM said no"):
        dp.attach(att, meanwhile=fail)
    assert ovsdb_rpc.select(private_ovs.endpoint, "Interface", [["name", "==", att.port_name]]) == []
    assert dp.get_port(att.port_name) is None


def test_detach_netdev_returns_once_the_switch_let_go_of_the_netdev(
    dp: OvsDataplane, private_ovs: PrivateOvs, unique: str
) -> None:
    """ovs-vswitchd writes a system port's link flags back from its own cache when it closes the netdev: a link state
    set right after a plain detach could be overwritten (the DRA vDPA test once saw its representor come back up).
    After detach_netdev the switch has applied the removal, so the caller's own state stays."""
    sw = dp.netdev_namespace()
    assert sw is not None  # the private OVS runs in a namespace of its own
    rep, peer = f"vr{unique}", f"vp{unique}"
    subprocess.run(["ip", "-n", private_ovs.netns, "link", "add", rep, "type", "veth", "peer", "name", peer], check=True)
    bridge = f"brn{unique}"
    try:
        for round_ in range(15):  # a plain detach let the switch turn the link up again in ~1 round of 10 here
            netdev.set_link(rep, sw, state="up")
            dp.attach_netdev(NetdevPort(rep, bridge, ((EXTERNAL_ID_ATTACHMENT, f"n{unique}/{round_}"),), None, None))
            assert dp.detach_netdev(rep) is True
            rows = ovsdb_rpc.select(private_ovs.endpoint, "Open_vSwitch", columns=["cur_cfg", "next_cfg"])
            assert rows[0]["cur_cfg"] == rows[0]["next_cfg"]  # nothing else writes this bridge's OVS meanwhile
            netdev.set_link(rep, sw, state="down")
            watch_until = time.monotonic() + 0.15  # a late write of the flags came within ~50 ms
            while time.monotonic() < watch_until:
                link = netdev.get(rep, sw)
                assert link is not None and not link.up, f"round {round_}: the switch set {rep} up after detach_netdev"
                time.sleep(0.01)
        assert dp.detach_netdev(rep) is False  # not there any more
    finally:
        subprocess.run(["ip", "-n", private_ovs.netns, "link", "del", rep], check=False)
        delete_bridge_if_ours(dp.endpoint, bridge)
