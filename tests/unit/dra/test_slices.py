"""What a node publishes in its ResourceSlices: slots per allowed bridge only, DNS-label device names, the vDPA devices
its pools take with their attributes, at most 128 devices per slice, and refusals naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vhostplug.cni.policy import NodePolicy
from vhostplug.dra.sliceconfig import SlicesConfig
from vhostplug.dra.slices import check_config, dns_label, node_devices, slice_specs
from vhostplug.vdpa.discovery import VdpaPool, VdpaSelectors, discover
from vhostplug_testsupport.fakesys import standard

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _policy(*bridges: str) -> NodePolicy:
    return NodePolicy(bridges=bridges)


def test_slots_per_allowed_bridge_with_their_attributes() -> None:
    config = SlicesConfig.model_validate(
        {"slotsPerBridge": 3, "bridges": {"br-fast": {"numaNode": 1, "modes": ["server"], "slots": 2}}}
    )
    devices = node_devices(_policy("br-vhost", "br-fast"), config)
    assert [d["name"] for d in devices] == ["vhu-br-vhost-0", "vhu-br-vhost-1", "vhu-br-vhost-2", "vhu-br-fast-0", "vhu-br-fast-1"]  # fmt: skip
    assert devices[0]["attributes"] == {
        "kind": {"string": "vhostuser"}, "bridge": {"string": "br-vhost"}, "datapathType": {"string": "netdev"},
        "serverMode": {"bool": True}, "clientMode": {"bool": True},
    }  # fmt: skip
    assert devices[-1]["attributes"]["numaNode"] == {"int": 1}
    assert devices[-1]["attributes"]["clientMode"] == {"bool": False}
    # a bridge the node policy does not allow gets nothing, and naming it is refused
    assert {d["attributes"]["bridge"]["string"] for d in devices} == {"br-vhost", "br-fast"}
    with pytest.raises(ValueError, match=r"dra\.slices\.bridges\.br-other"):
        check_config(_policy("br-vhost"), SlicesConfig.model_validate({"bridges": {"br-other": {}}}))
    assert node_devices(_policy("br-vhost"), SlicesConfig.model_validate({"slotsPerBridge": 0})) == []


def test_device_names_are_dns_labels() -> None:
    for name in ("br_DPDK", "br.x", "-br-", "b" * 15):
        label = dns_label(name, 40)
        assert LABEL.match(label) and len(label) <= 40, (name, label)
    assert dns_label("br_a") != dns_label("br-a")  # a changed name keeps a hash of the original
    assert dns_label("br-a") == "br-a"
    devices = node_devices(_policy("br_a", "br-a"), SlicesConfig.model_validate({"slotsPerBridge": 2}))
    assert all(LABEL.match(d["name"]) and len(d["name"]) <= 63 for d in devices)
    assert len({d["name"] for d in devices}) == 4


def test_vdpa_devices_of_the_pools(tmp_path: Path) -> None:
    fs = standard(tmp_path)
    found = discover(fs.sys, fs.dev)
    pools = [
        VdpaPool(resource_name="vhostplug.io/vdpa_mlx", selectors=VdpaSelectors(vendors=["15b3"], vdpa_type="vhost")),
        VdpaPool(resource_name="vhostplug.io/vdpa_virtio", selectors=VdpaSelectors(vdpa_type="virtio")),
    ]
    config = SlicesConfig.model_validate({"slotsPerBridge": 1})
    devices = {d["name"]: d["attributes"] for d in node_devices(_policy("br-vhost"), config, found, pools)}
    assert set(devices) == {"vhu-br-vhost-0", "vdpa-vdpa0", "vdpa-vdpa1", "vdpa-vdpa2", "vdpa-vdpa3"}
    assert devices["vdpa-vdpa2"] == {
        "kind": {"string": "vdpa"}, "vdpaDevice": {"string": "vdpa2"}, "vdpaType": {"string": "vhost"},
        "pciAddress": {"string": "0000:b3:00.2"}, "pciDriver": {"string": "mlx5_core"},
        "pciVendor": {"string": "15b3"}, "pciDevice": {"string": "101e"}, "pfName": {"string": "ens2f0"},
        "numaNode": {"int": 1}, "vdpaPool": {"string": "vhostplug.io/vdpa_mlx"}, "bridge": {"string": "br-vhost"},
        "datapathType": {"string": "netdev"},
    }  # fmt: skip
    assert devices["vdpa-vdpa3"]["vdpaType"] == {"string": "virtio"}
    off = SlicesConfig.model_validate({"slotsPerBridge": 1, "vdpa": False})
    assert [d["name"] for d in node_devices(_policy("br-vhost"), off, found, pools)] == ["vhu-br-vhost-0"]


def test_a_pool_is_cut_into_slices_of_at_most_128_devices() -> None:
    devices = node_devices(_policy("br-a", "br-b"), SlicesConfig.model_validate({"slotsPerBridge": 100}))
    specs = slice_specs("node-1", "vhostuser.vhostplug.io", devices, 7)
    assert [len(s["devices"]) for s in specs] == [128, 72]
    assert all(s["pool"] == {"name": "node-1", "generation": 7, "resourceSliceCount": 2} for s in specs)
    assert all(s["nodeName"] == "node-1" and s["driver"] == "vhostuser.vhostplug.io" for s in specs)
    assert [d for s in specs for d in s["devices"]] == devices
    assert slice_specs("node-1", "d.io", [], 1) == []
