"""vDPA pools through real gRPC: discovery into resources, NUMA topology and preference, hot-add/remove, health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.deviceplugin.conftest import Rig, make_rig
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug_testsupport.fakesys import FakeSys, standard

MLX = "vhostplug.io/vdpa_mlx"
VIRTIO = "vhostplug.io/vdpa_virtio"


def ids(devs: list[pb.Device]) -> list[str]:
    return [d.ID for d in devs]


@pytest.fixture
def vdpa_rig(short_dir: Path) -> Iterator[tuple[Rig, FakeSys]]:
    fs = standard(short_dir / "f")
    rig = make_rig(
        short_dir,
        {
            "dataplane": {"enabled": False},
            "vdpa": {
                "sysfsRoot": str(fs.sys),
                "devRoot": str(fs.dev),
                "rescanSeconds": 0.3,
                "pools": [
                    {"resourceName": MLX, "selectors": {"vendors": ["15b3"], "vdpaType": "vhost"}},
                    {"resourceName": VIRTIO, "selectors": {"vdpaType": "virtio"}},
                ],
            },
        },
    )
    try:
        yield rig, fs
    finally:
        rig.manager.stop()
        rig.kubelet.stop()


def test_pools_registered_with_topology(vdpa_rig: tuple[Rig, FakeSys]) -> None:
    rig, _ = vdpa_rig
    devs = rig.kubelet.wait_for(MLX, lambda d: len(d) == 3, timeout=5)
    assert ids(devs) == ["vdpa0", "vdpa1", "vdpa2"]
    assert [[n.ID for n in d.topology.nodes] for d in devs] == [[0], [0], [1]]
    assert all(d.health == "Healthy" for d in devs)
    assert ids(rig.kubelet.wait_for(VIRTIO, lambda d: len(d) == 1, timeout=5)) == ["vdpa3"]


def test_preferred_allocation_is_numa_aware(vdpa_rig: tuple[Rig, FakeSys]) -> None:
    rig, fs = vdpa_rig
    fs.add_vf("0000:b3:00.4", "0000:b3:00.0", numa=1)
    fs.add_vdpa("0000:b3:00.4", "vdpa4", index=4)
    rig.kubelet.wait_for(MLX, lambda d: len(d) == 4, timeout=5)
    pref = rig.kubelet.stub(MLX).GetPreferredAllocation(
        pb.PreferredAllocationRequest(
            container_requests=[
                pb.ContainerPreferredAllocationRequest(
                    available_deviceIDs=["vdpa0", "vdpa1", "vdpa2", "vdpa4"],
                    must_include_deviceIDs=["vdpa2"],
                    allocation_size=2,
                )
            ]
        ),
        timeout=5,
    )
    assert list(pref.container_responses[0].deviceIDs) == ["vdpa2", "vdpa4"]


def test_allocate_through_grpc(vdpa_rig: tuple[Rig, FakeSys]) -> None:
    rig, fs = vdpa_rig
    rig.kubelet.wait_for(MLX, lambda d: len(d) == 3, timeout=5)
    got, resp = rig.kubelet.allocate(MLX, 2)
    assert got == ["vdpa0", "vdpa1"]
    assert [d.container_path for d in resp.devices] == ["/dev/vhost-vdpa-0", "/dev/vhost-vdpa-1"]
    assert [d.host_path for d in resp.devices] == [str(fs.dev / "vhost-vdpa-0"), str(fs.dev / "vhost-vdpa-1")]
    assert resp.envs["PCIDEVICE_VHOSTPLUG_IO_VDPA_MLX"] == "0000:65:00.2,0000:65:00.3"
    info = json.loads(resp.envs["PCIDEVICE_VHOSTPLUG_IO_VDPA_MLX_INFO"])
    assert info["0000:65:00.3"]["vdpa"]["mount"] == "/dev/vhost-vdpa-1"
    dp = json.loads((rig.devinfo / "dp" / "vhostplug.io-vdpa_mlx-vdpa1-device.json").read_text())
    assert dp["type"] == "vdpa" and dp["vdpa"]["path"] == "/dev/vhost-vdpa-1"
    # each pool is its own plugin: the virtio one's first ListAndWatch may come after the mlx one's
    rig.kubelet.wait_for(VIRTIO, lambda d: len(d) == 1, timeout=5)
    _, vresp = rig.kubelet.allocate(VIRTIO, 1)
    assert list(vresp.devices) == []
    assert vresp.envs["PCIDEVICE_VHOSTPLUG_IO_VDPA_VIRTIO_NETDEVS"] == "eth7"
    rig.manager.stop()
    assert list((rig.devinfo / "dp").iterdir()) == []


def test_hot_add_remove_and_health(vdpa_rig: tuple[Rig, FakeSys]) -> None:
    rig, fs = vdpa_rig
    rig.kubelet.wait_for(MLX, lambda d: len(d) == 3, timeout=5)
    fs.add_vf("0000:65:00.4", "0000:65:00.0")
    fs.add_vdpa("0000:65:00.4", "vdpa5", index=5)
    rig.kubelet.wait_for(MLX, lambda d: "vdpa5" in ids(d), timeout=5)
    fs.remove_vdpa("0000:65:00.2", "vdpa0")
    devs = rig.kubelet.wait_for(MLX, lambda d: "vdpa0" not in ids(d), timeout=5)
    assert ids(devs) == ["vdpa1", "vdpa2", "vdpa5"]
    (fs.dev / "vhost-vdpa-1").unlink()
    devs = rig.kubelet.wait_for(MLX, lambda d: any(x.health == "Unhealthy" for x in d), timeout=5)
    assert {d.ID: d.health for d in devs} == {"vdpa1": "Unhealthy", "vdpa2": "Healthy", "vdpa5": "Healthy"}
    assert "vdpa1" not in rig.kubelet.free(MLX)
    (fs.dev / "vhost-vdpa-1").write_text("back")
    rig.kubelet.wait_for(MLX, lambda d: all(x.health == "Healthy" for x in d), timeout=5)
