"""vDPA devices through DRA, on the lab's stand-in vDPA devices (vhostplug_testsupport.fakesys): a vhost-vdpa device
goes to the container as its character device (CDI ``deviceNodes``) with ``vhost-vdpa-path`` in the metadata; a
virtio-vdpa device is a kernel netdev, named in the claim status (``networkData.interfaceName``) for a CNI to move.
The agent publishes both from its devicePlugin.vdpa pools; Prepare finds them again by name."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.dra.conftest import NODE, dra_config, wait_for_slices
from tests.functional.dra.test_prepare import _seed, _status_devices
from vhostplug.dra.config import DRIVER_NAME
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.drakubelet import DraKubelet
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.podinfo import devicemetadata
from vhostplug_testsupport import draobjects
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent
from vhostplug_testsupport.fakesys import FakeSys, standard


@pytest.fixture(scope="module")
def vdpa_agent(private_ovs: PrivateOvs, apiserver: ApiServer) -> Iterator[tuple[AgentProc, DraKubelet, FakeSys]]:
    root = Path(tempfile.mkdtemp(prefix="vhp-dravdpa-", dir="/tmp"))
    fs = standard(root / "fake")
    pools = [
        {"resourceName": "vhostplug.io/vdpa_vhost", "selectors": {"vendors": ["15b3"], "vdpaType": "vhost"}},
        {"resourceName": "vhostplug.io/vdpa_virtio", "selectors": {"vendors": ["15b3"], "vdpaType": "virtio"}},
    ]
    agent = make_agent(
        private_ovs,
        bridges={"allowed": ["br-dra"]},
        devicePluginDir=str(root / "dp"),
        devicePlugin={"vdpa": {"sysfsRoot": str(fs.sys), "devRoot": str(fs.dev), "pools": pools}},
        dra=dra_config(root, apiserver),
    )
    agent.dra_root = root  # type: ignore[attr-defined]
    kubelet = DraKubelet(root / "plugins_registry")
    try:
        wait_for_slices(apiserver)
        apiserver.wait_for(
            lambda: any(
                d["name"] == "vdpa-vdpa3"
                for s in apiserver.list("resource.k8s.io/v1", "ResourceSlice")
                for d in s["spec"].get("devices") or []
            )
        )
        kubelet.register()
        yield agent, kubelet, fs
    finally:
        kubelet.close()
        stop_agent(agent, bridges=("br-dra",))
        shutil.rmtree(root, ignore_errors=True)


def test_vhost_vdpa_goes_to_the_container_as_its_char_device_and_virtio_is_named_in_the_status(
    vdpa_agent: tuple[AgentProc, DraKubelet, FakeSys], apiserver: ApiServer
) -> None:
    agent, kubelet, fs = vdpa_agent
    root: Path = agent.dra_root  # type: ignore[attr-defined]
    c = _seed(apiserver, draobjects.claim("vdpa-pod", NODE, [("fast", "vdpa-vdpa1"), ("kern", "vdpa-vdpa3")]))
    entry = kubelet.prepare([c]).claims[c.uid]
    assert entry.error == ""
    ids = {d.request_names[0]: list(d.cdi_device_ids) for d in entry.devices}
    assert ids == {"fast": [f"vhostplug.io/vdpa={c.uid}-fast"], "kern": [f"vhostplug.io/vdpa={c.uid}-kern"]}
    spec_file = root / "cdi" / f"{DRIVER_NAME}_vdpa_{c.uid}.json"
    spec = json.loads(spec_file.read_text())
    assert spec["kind"] == "vhostplug.io/vdpa"
    devices = {d["name"]: d["containerEdits"] for d in spec["devices"]}
    assert devices[f"{c.uid}-fast"]["deviceNodes"] == [
        {"path": "/dev/vhost-vdpa-1", "hostPath": str(fs.dev / "vhost-vdpa-1"), "permissions": "rw"}
    ]
    assert "deviceNodes" not in devices[f"{c.uid}-kern"]
    meta_mount = next(m for m in devices[f"{c.uid}-fast"]["mounts"] if m["containerPath"].endswith("-metadata.json"))
    meta = devicemetadata.decode(Path(meta_mount["hostPath"]).read_text())
    assert meta is not None
    attrs = {k: devicemetadata.attribute_value(v) for k, v in meta.requests["fast"][0].attributes.items()}
    assert attrs["vhost-vdpa-path"] == "/dev/vhost-vdpa-1" and attrs["vdpa-device"] == "vdpa1"
    status = {s["device"]: s for s in _status_devices(apiserver, c)}
    assert status["vdpa-vdpa1"]["data"]["devNode"] == "/dev/vhost-vdpa-1"
    assert status["vdpa-vdpa3"]["networkData"] == {"interfaceName": "eth7"}
    assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert not spec_file.exists()
    assert not (root / "plugins" / DRIVER_NAME / "dra-device-metadata" / f"default_{c.name}").exists()


def test_a_vdpa_device_that_went_away_is_refused_naming_it(
    vdpa_agent: tuple[AgentProc, DraKubelet, FakeSys], apiserver: ApiServer
) -> None:
    agent, kubelet, fs = vdpa_agent
    fs.remove_vdpa("0000:b3:00.2", "vdpa2")  # still in the published slice until the next rescan
    c = _seed(apiserver, draobjects.claim("vdpa-gone", NODE, [("fast", "vdpa-vdpa2")]))
    err = kubelet.prepare([c]).claims[c.uid].error
    assert "vdpa2" in err and "node" in err  # gone from sysfs (or, after a rescan, from the slice too)
    root: Path = agent.dra_root  # type: ignore[attr-defined]
    assert list((root / "cdi").glob(f"*{c.uid}*")) == []
