"""vDPA devices through DRA, on the lab's stand-in vDPA parts (a switchdev-like sysfs tree, veth pairs as VF and
representor, real char nodes as /dev/vhost-vdpa-N): Prepare puts the VF's representor on the bridge (in the private
OVS's namespace) and hands a vhost-vdpa device to the container as its character device (CDI ``deviceNodes``, with
``vhost-vdpa-path`` in the metadata); a virtio-vdpa device is a kernel netdev, named in the claim status
(``networkData.interfaceName``) for a CNI to move. Unprepare takes the representor off the bridge and gives back its
state. The agent publishes the devices from its devicePlugin.vdpa pools; Prepare finds them again by name."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.dra.conftest import NODE, dra_config, wait_for_slices
from tests.functional.dra.test_prepare import _seed, _status_devices
from vhostplug import ovsvhost
from vhostplug.dra.config import DRIVER_NAME
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.drakubelet import DraKubelet
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.vdpa_parts import StandIn, build
from vhostplug.podinfo import devicemetadata
from vhostplug.vdpa import netdev
from vhostplug_testsupport import draobjects
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent

BRIDGE = "br-dra"


@pytest.fixture(scope="module")
def vdpa_agent(private_ovs: PrivateOvs, apiserver: ApiServer) -> Iterator[tuple[AgentProc, DraKubelet, StandIn]]:
    root = Path(tempfile.mkdtemp(prefix="vhp-dravdpa-", dir="/tmp"))
    parts = build(root / "hw", virtio=1, vhost=2, switch_netns=private_ovs.netns)  # vdpa0 virtio, vdpa1-2 vhost
    pools = [
        {"resourceName": "vhostplug.io/vdpa_vhost", "selectors": {"vdpaType": "vhost"}},
        {"resourceName": "vhostplug.io/vdpa_virtio", "selectors": {"vdpaType": "virtio"}},
    ]
    agent = make_agent(
        private_ovs,
        bridges={"allowed": [BRIDGE]},
        devicePluginDir=str(root / "dp"),
        devicePlugin={
            "dataplane": {"enabled": False},
            "vdpa": {"sysfsRoot": str(parts.sys), "devRoot": str(parts.dev), "pools": pools},
        },
        dra=dra_config(root, apiserver),
    )
    agent.dra_root = root  # type: ignore[attr-defined]
    kubelet = DraKubelet(root / "plugins_registry")
    try:
        wait_for_slices(apiserver)
        apiserver.wait_for(
            lambda: any(
                d["name"] == "vdpa-vdpa2"
                for s in apiserver.list("resource.k8s.io/v1", "ResourceSlice")
                for d in s["spec"].get("devices") or []
            )
        )
        kubelet.register()
        yield agent, kubelet, parts
    finally:
        kubelet.close()
        stop_agent(agent, bridges=(BRIDGE,))
        parts.remove()
        shutil.rmtree(root, ignore_errors=True)


def test_vdpa_devices_get_their_representor_on_the_bridge_and_go_to_the_container(
    vdpa_agent: tuple[AgentProc, DraKubelet, StandIn], apiserver: ApiServer, private_ovs: PrivateOvs
) -> None:
    agent, kubelet, parts = vdpa_agent
    root: Path = agent.dra_root  # type: ignore[attr-defined]
    vhost, virtio = parts.vfs[1], parts.vfs[0]
    before = netdev.get(vhost.representor, f"/var/run/netns/{private_ovs.netns}")
    assert before is not None
    params = {"kind": "VdpaConfig", "mtu": 1600, "vlan": 12}
    c = _seed(
        apiserver, draobjects.claim("vdpa-pod", NODE, [("fast", "vdpa-vdpa1"), ("kern", "vdpa-vdpa0")], params=params)
    )
    entry = kubelet.prepare([c]).claims[c.uid]
    assert entry.error == ""
    ids = {d.request_names[0]: list(d.cdi_device_ids) for d in entry.devices}
    assert ids == {"fast": [f"vhostplug.io/vdpa={c.uid}-fast"], "kern": [f"vhostplug.io/vdpa={c.uid}-kern"]}

    # the representors, on the bridge with the claim's VLAN and MTU
    assert agent.dataplane is not None
    for vf in (vhost, virtio):
        port = agent.dataplane.get_port(vf.representor)
        assert port is not None and port.bridge == BRIDGE and port.vlan == 12, vf
        assert port.external_ids[ovsvhost.ID_DRA_CLAIM] == c.uid
        link = netdev.get(vf.representor, f"/var/run/netns/{private_ovs.netns}")
        assert link is not None and link.up and link.mtu == 1600

    spec_file = root / "cdi" / f"{DRIVER_NAME}_vdpa_{c.uid}.json"
    spec = json.loads(spec_file.read_text())
    assert spec["kind"] == "vhostplug.io/vdpa"
    devices = {d["name"]: d["containerEdits"] for d in spec["devices"]}
    assert devices[f"{c.uid}-fast"]["deviceNodes"] == [
        {"path": f"/dev/{vhost.chardev}", "hostPath": str(parts.dev / vhost.chardev), "permissions": "rw"}
    ]
    assert "deviceNodes" not in devices[f"{c.uid}-kern"]
    meta_mount = next(m for m in devices[f"{c.uid}-fast"]["mounts"] if m["containerPath"].endswith("-metadata.json"))
    meta = devicemetadata.decode(Path(meta_mount["hostPath"]).read_text())
    assert meta is not None
    attrs = {k: devicemetadata.attribute_value(v) for k, v in meta.requests["fast"][0].attributes.items()}
    assert attrs["vhost-vdpa-path"] == f"/dev/{vhost.chardev}" and attrs["vdpa-device"] == "vdpa1"
    status = {s["device"]: s for s in _status_devices(apiserver, c)}
    assert status["vdpa-vdpa1"]["data"]["devNode"] == f"/dev/{vhost.chardev}"
    assert status["vdpa-vdpa1"]["data"]["representor"] == vhost.representor
    assert status["vdpa-vdpa0"]["networkData"] == {"interfaceName": virtio.netdev}

    # a second claim for a device in use is refused naming the claim that has it
    other = _seed(apiserver, draobjects.claim("vdpa-again", NODE, [("fast", "vdpa-vdpa1")]))
    err = kubelet.prepare([other]).claims[other.uid].error
    assert "vdpa1" in err and "in use" in err

    assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert agent.dataplane.get_port(vhost.representor) is None and agent.dataplane.get_port(virtio.representor) is None
    after = netdev.get(vhost.representor, f"/var/run/netns/{private_ovs.netns}")
    assert after is not None and (after.up, after.mtu) == (before.up, before.mtu)
    assert not spec_file.exists()
    assert not (root / "plugins" / DRIVER_NAME / "dra-device-metadata" / f"default_{c.name}").exists()


def test_a_vdpa_device_that_went_away_is_refused_naming_it(
    vdpa_agent: tuple[AgentProc, DraKubelet, StandIn], apiserver: ApiServer
) -> None:
    agent, kubelet, parts = vdpa_agent
    os.unlink(parts.sys / "bus/vdpa/devices" / "vdpa2")  # unbound; still in the slice until the next rescan
    c = _seed(apiserver, draobjects.claim("vdpa-gone", NODE, [("fast", "vdpa-vdpa2")]))
    err = kubelet.prepare([c]).claims[c.uid].error
    assert "vdpa2" in err and "node" in err  # gone from sysfs (or, after a rescan, from the slice too)
    root: Path = agent.dra_root  # type: ignore[attr-defined]
    assert list((root / "cdi").glob(f"*{c.uid}*")) == []
    assert agent.dataplane is not None and agent.dataplane.get_port(parts.vfs[2].representor) is None
