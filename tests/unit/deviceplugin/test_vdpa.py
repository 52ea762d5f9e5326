"""vDPA discovery from a fake sysfs, selectors, env names, and Allocate's answer and device-info file."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from vhostplug.deviceplugin.vdpa import VdpaPool, VdpaPoolDevices, VdpaSelectors, discover, env_base, matches
from vhostplug.protocols import AllocateError
from vhostplug_testsupport.fakesys import standard


def test_discover_reads_the_tree(tmp_path: Path) -> None:
    fs = standard(tmp_path)
    devs = {d.name: d for d in discover(fs.sys, fs.dev)}
    assert sorted(devs) == ["vdpa0", "vdpa1", "vdpa2", "vdpa3"]  # vdpa9 is bound to no vDPA bus driver
    d0 = devs["vdpa0"]
    assert (d0.driver, d0.chardev, d0.health_path) == ("vhost", "vhost-vdpa-0", fs.dev / "vhost-vdpa-0")
    assert (d0.pci_address, d0.vendor, d0.device, d0.pci_driver) == ("0000:65:00.2", "15b3", "101e", "mlx5_core")
    assert (d0.pf_pci_address, d0.pf_name, d0.numa) == ("0000:65:00.0", "ens1f0", 0)
    assert d0.container_path == "/dev/vhost-vdpa-0"
    d2 = devs["vdpa2"]
    assert (d2.pf_name, d2.numa, d2.chardev) == ("ens2f0", 1, "vhost-vdpa-2")
    d3 = devs["vdpa3"]
    assert (d3.driver, d3.netdev, d3.chardev) == ("virtio", "eth7", None)


def test_discover_empty_or_missing_tree(tmp_path: Path) -> None:
    assert discover(tmp_path / "nosys", tmp_path / "dev") == []


def test_numa_minus_one_means_unknown(tmp_path: Path) -> None:
    fs = standard(tmp_path)
    (fs.pci("0000:65:00.2") / "numa_node").write_text("-1\n")
    d0 = next(d for d in discover(fs.sys, fs.dev) if d.name == "vdpa0")
    assert d0.numa is None


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        ({}, ["vdpa0", "vdpa1", "vdpa2", "vdpa3"]),
        ({"vendors": ["15b3"], "vdpaType": "vhost"}, ["vdpa0", "vdpa1", "vdpa2"]),
        ({"vdpaType": "virtio"}, ["vdpa3"]),
        ({"pfNames": ["ens2f0"]}, ["vdpa2", "vdpa3"]),
        ({"pciAddresses": ["0000:65:00.3"]}, ["vdpa1"]),
        ({"devices": ["101e"], "drivers": ["mlx5_core"], "pfNames": ["ens1f0"]}, ["vdpa0", "vdpa1"]),
        ({"vendors": ["8086"]}, []),
        ({"drivers": ["ifcvf"]}, []),
    ],
)
def test_selectors(tmp_path: Path, selectors: dict[str, object], expected: list[str]) -> None:
    fs = standard(tmp_path)
    sel = VdpaSelectors.model_validate(selectors)
    assert [d.name for d in discover(fs.sys, fs.dev) if matches(d, sel)] == expected


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
