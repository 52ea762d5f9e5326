"""vDPA pools as kubelet resources: env names, and Allocate's answer and device-info file (discovery and selectors:
tests/unit/vdpa/test_discovery.py)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from vhostplug.deviceplugin.vdpa import VdpaPoolDevices, env_base
from vhostplug.protocols import AllocateError
from vhostplug.vdpa.discovery import VdpaPool, discover
from vhostplug_testsupport.fakesys import standard


def test_env_base() -> None:
    assert env_base("vhostplug.io/vdpa_mlx") == "PCIDEVICE_VHOSTPLUG_IO_VDPA_MLX"
    assert env_base("example.com/a-b.c") == "PCIDEVICE_EXAMPLE_COM_A_B_C"


def test_allocate_vhost_and_virtio(tmp_path: Path) -> None:
    fs = standard(tmp_path)
    pool = VdpaPoolDevices(VdpaPool(resource_name="vhostplug.io/vdpa"), tmp_path / "di")
    pool.update(discover(fs.sys, fs.dev))
    resp = pool.allocate(["vdpa0", "vdpa3"])
    assert [(d.host_path, d.container_path, d.permissions) for d in resp.devices] == [
        (str(fs.dev / "vhost-vdpa-0"), "/dev/vhost-vdpa-0", "rw")
    ]
    assert resp.envs["PCIDEVICE_VHOSTPLUG_IO_VDPA"] == "0000:65:00.2,0000:b3:00.3"
    assert resp.envs["PCIDEVICE_VHOSTPLUG_IO_VDPA_NETDEVS"] == "eth7"
    info = json.loads(resp.envs["PCIDEVICE_VHOSTPLUG_IO_VDPA_INFO"])
    assert info["0000:65:00.2"] == {
        "generic": {"deviceID": "0000:65:00.2"},
        "vdpa": {"name": "vdpa0", "driver": "vhost", "mount": "/dev/vhost-vdpa-0"},
    }
    assert info["0000:b3:00.3"]["vdpa"] == {"name": "vdpa3", "driver": "virtio", "netdev": "eth7"}
    dp = json.loads((tmp_path / "di" / "dp" / "vhostplug.io-vdpa-vdpa0-device.json").read_text())
    assert dp == {
        "type": "vdpa",
        "version": "1.1.0",
        "vdpa": {
            "parent-device": "vdpa0",
            "driver": "vhost",
            "path": "/dev/vhost-vdpa-0",
            "pci-address": "0000:65:00.2",
            "pf-pci-address": "0000:65:00.0",
        },
    }
    pool.cleanup()
    assert list((tmp_path / "di" / "dp").iterdir()) == []


def test_allocate_refuses_unknown_and_lost_devices(tmp_path: Path) -> None:
    fs = standard(tmp_path)
    pool = VdpaPoolDevices(VdpaPool(resource_name="vhostplug.io/vdpa"), tmp_path / "di")
    pool.update(discover(fs.sys, fs.dev))
    with pytest.raises(AllocateError) as err:
        pool.allocate(["vdpa7"])
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    (fs.dev / "vhost-vdpa-1").unlink()
    assert {s.id: s.healthy for s in pool.poll()}["vdpa1"] is False
    with pytest.raises(AllocateError) as err:
        pool.allocate(["vdpa0", "vdpa1"])
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert not (tmp_path / "di" / "dp").exists()
