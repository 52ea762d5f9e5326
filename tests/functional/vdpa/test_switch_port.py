"""The Dataplane seam's kernel-netdev port on the real private OVS-DPDK: one transaction with tag, MTU and
external_ids, ofport waited for; a netdev ovs-vswitchd cannot open is refused and removed; a port already there is
refused naming its owner; the switch's namespace is found from ovs-vswitchd's pidfile."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.conftest import require_root
from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import NetdevPort
from vhostplug.protocols import DataplaneError
from vhostplug_testsupport.bridges import delete_bridge_if_ours


def test_netdev_port_on_a_netdev_bridge(private_ovs: PrivateOvs) -> None:
    require_root()
    tag = uuid.uuid4().hex[:6]
    rep, peer, bridge = f"vrt{tag}", f"vpt{tag}", f"brt{tag}"
    subprocess.run(["ip", "link", "add", rep, "type", "veth", "peer", "name", peer], check=True)
    subprocess.run(["ip", "link", "set", rep, "netns", private_ovs.netns], check=True)
    dp = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir)
    try:
        ns = dp.netdev_namespace()
        assert ns is not None and os.stat(ns).st_ino == os.stat(f"/var/run/netns/{private_ovs.netns}").st_ino
        ids = (("vhostplug-attachment", "c/net1"), ("vhostplug-vdpa-device", "vdpa0"))
        port = dp.attach_netdev(NetdevPort(rep, bridge, ids, mtu=1400, vlan=7))
        assert (port.ovs_type, port.bridge, port.vlan, port.mtu) == ("system", bridge, 7, 1400)
        assert port.ofport is not None and port.ofport > 0 and port.attachment_key == "c/net1"
        with pytest.raises(DataplaneError, match=f"already OVS port of bridge {bridge} \\(attachment c/net1\\)"):
            dp.attach_netdev(NetdevPort(rep, bridge, ids))
        missing = f"vmt{tag}"
        with pytest.raises(DataplaneError, match=f"could not add port {missing}: could not open network device"):
            dp.attach_netdev(NetdevPort(missing, bridge, (("vhostplug-attachment", "d/net1"),)), timeout=3)
        assert dp.get_port(missing) is None
        assert dp.detach(rep) and dp.get_port(rep) is None
    finally:
        dp.detach(rep)
        delete_bridge_if_ours(dp.endpoint, bridge)
        dp.close()
        subprocess.run(["ip", "link", "del", peer], capture_output=True, check=False)
