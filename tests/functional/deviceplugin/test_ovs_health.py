"""vhostuser devices follow a real OVSDB: Unhealthy when the private OVS stops, Healthy when it is back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import own_private_ovs
from tests.functional.deviceplugin.conftest import VU, make_rig, vhostuser_source
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb

pytestmark = pytest.mark.ovs  # PrivateOvs of its own


def test_health_flips_with_ovsdb(short_dir: Path) -> None:
    with own_private_ovs("vhp-dpovs-") as ovs:  # its own: this test stops and starts it

        def probe() -> tuple[bool, str]:
            try:
                ovsdb_rpc.select(ovs.endpoint, "Open_vSwitch")
            except (ovsdb_rpc.OvsdbRpcError, OSError) as exc:
                return False, str(exc)
            return True, ""

        rig = make_rig(short_dir, {"healthSeconds": 0.3}, probe=probe)
        try:

            def all_health(h: str) -> Callable[[list[pb.Device]], bool]:
                return lambda devs: bool(devs) and all(d.health == h for d in devs)

            rig.kubelet.wait_for(VU, all_health("Healthy"), timeout=10)
            ovs.stop()
            rig.kubelet.wait_for(VU, all_health("Unhealthy"), timeout=10)
            last = vhostuser_source(rig).last_health[1]
            assert "OVSDB" in last or "connect" in last
            ovs.start()
            devs: list[pb.Device] = rig.kubelet.wait_for(VU, all_health("Healthy"), timeout=15)
            assert len(devs) == 4
        finally:
            rig.manager.stop()
            rig.kubelet.stop()
