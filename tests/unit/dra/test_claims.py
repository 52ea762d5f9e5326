"""From a ResourceClaim to what the node prepares: the opaque config (the netconf's own checks), the checks that
name what is wrong, the stable container paths of the layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vhostplug.dra import claims, opaque
from vhostplug.dra.catalog import devices_of
from vhostplug.dra.config import DRIVER_NAME
from vhostplug.dra.layout import ClaimRef, Layout
from vhostplug.model import DraDevice, Mode
from vhostplug_testsupport import draobjects


class _Catalog:
    def __init__(self) -> None:
        self.devices = devices_of([draobjects.slice_of("node-a", "br-dra", 4)], DRIVER_NAME)

    def lookup(self, pool: str, device: str) -> DraDevice | None:
        return self.devices.get((pool, device))


def _plan(obj: dict[str, Any]) -> claims.ClaimPlan:
    return claims.plan(obj, obj["metadata"]["uid"], DRIVER_NAME, "node-a", _Catalog())


def test_opaque_config_is_merged_class_first_and_checked_like_a_netconf() -> None:
    conf = opaque.parse([{"mtu": 1500, "vlan": 7}, {"mtu": 9000, "mode": "client"}])
    assert (conf.mtu, conf.vlan, conf.mode) == (9000, 7, Mode.CLIENT)
    with pytest.raises(opaque.ConfigError, match="mtu"):
        opaque.parse([{"mtu": 67}])
    with pytest.raises(opaque.ConfigError, match="queuez: unknown key"):
        opaque.parse([{"queuez": 2}])
    with pytest.raises(opaque.ConfigError, match="apiVersion"):
        opaque.parse([{"apiVersion": "vhostplug.io/v2"}])


def test_plan_takes_our_devices_with_the_config_that_applies_to_their_request() -> None:
    obj = draobjects.claim("c", "node-a", [("a", "vu-000"), ("b", "vu-001")])
    obj["status"]["allocation"]["devices"]["results"].append(
        {"request": "gpu", "driver": "gpu.example.com", "pool": "p", "device": "g0"}
    )
    obj["status"]["allocation"]["devices"]["config"] = [
        {"source": "FromClaim", "requests": ["b"], "opaque": {"driver": DRIVER_NAME, "parameters": {"mtu": 9000}}},
        {"source": "FromClass", "opaque": {"driver": DRIVER_NAME, "parameters": {"mtu": 1600, "vlan": 3}}},
        {"source": "FromClaim", "opaque": {"driver": "gpu.example.com", "parameters": {"whatever": 1}}},
    ]
    p = _plan(obj)
    by_request = {d.request: d for d in p.devices}
    assert set(by_request) == {"a", "b"}
    assert (by_request["a"].config.mtu, by_request["a"].config.vlan) == (1600, 3)
    assert (by_request["b"].config.mtu, by_request["b"].config.vlan) == (9000, 3)
    assert by_request["a"].catalog.bridge == "br-dra"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda o: o["metadata"].update(uid="other"), "kubelet asked for"),
        (lambda o: o["status"].pop("allocation"), "is not allocated"),
        (
            lambda o: o["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0].update(
                values=["node-b"]
            ),
            "allocated to another node",
        ),
        (
            lambda o: o["status"]["allocation"]["devices"]["results"][0].update(device="vu-404"),
            "vu-404 is not a device",
        ),
        (lambda o: o["status"]["allocation"]["devices"]["results"][0].update(driver="x.example.com"), "no device of"),
    ],
)
def test_plan_refusals_name_what_is_wrong(change: Any, named: str) -> None:
    obj = draobjects.claim("c", "node-a", [("a", "vu-000")])
    uid = obj["metadata"]["uid"]
    change(obj)
    with pytest.raises(claims.ClaimError, match=named):
        claims.plan(obj, uid, DRIVER_NAME, "node-a", _Catalog())


def test_layout_container_paths_follow_the_pods_claim_name() -> None:
    lay = Layout(Path("/run/vhp"), "/var/run/vhostplug", Path("/k/plugins/d"), Path("/var/run/cdi"), DRIVER_NAME)
    a = ClaimRef("ns", "vm-a-net-1x2y3", "uid-a", pod_claim_name="net")
    b = ClaimRef("ns", "vm-a-net-9z8w7", "uid-b", pod_claim_name="net")
    direct = ClaimRef("ns", "shared", "uid-c")
    assert (
        lay.container_folder(a, "r")
        == lay.container_folder(b, "r")
        == "/var/run/vhostplug/dra/resourceclaimtemplates/net/r"
    )
    assert lay.host_folder(a, "r") != lay.host_folder(b, "r")
    assert lay.container_folder(direct, "r") == "/var/run/vhostplug/dra/resourceclaims/shared/r"
    assert lay.metadata_container_file(a, "r") == (
        f"/var/run/kubernetes.io/dra-device-attributes/resourceclaimtemplates/net/r/{DRIVER_NAME}-metadata.json"
    )
    assert lay.metadata_file(direct, "r") == Path("/k/plugins/d/dra-device-metadata/ns_shared/r/metadata.json")
    assert lay.cdi_device_id(a, "r", "vhostuser") == "vhostplug.io/vhostuser=uid-a-r"
