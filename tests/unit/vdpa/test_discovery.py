"""vDPA discovery from a fake sysfs, and the pool selectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vhostplug.vdpa.discovery import VdpaSelectors, discover, matches
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
