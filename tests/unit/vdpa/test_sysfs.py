"""The CNI's vDPA lookup on the pool's fake sysfs tree, with the switchdev attributes a representor search reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vhostplug.vdpa import sysfs
from vhostplug.vdpa.discovery import VdpaPool, VdpaSelectors
from vhostplug.vdpa.sysfs import VdpaLookupError
from vhostplug_testsupport.fakesys import FakeSys, standard

SWITCH = "aabbccddeeff0011"


def switchdev(fs: FakeSys, pf: str = "0000:65:00.0", pf_name: str = "ens1f0", port: str = "p0") -> None:
    """Give the PF an e-switch and list its VFs as the kernel does (virtfnN)."""
    uplink = fs.pci(pf) / "net" / pf_name
    (uplink / "phys_switch_id").write_text(SWITCH + "\n")
    (uplink / "phys_port_name").write_text(port + "\n")
    (fs.sys / "class/net").mkdir(parents=True, exist_ok=True)


def virtfn(fs: FakeSys, pf: str, n: int, vf: str) -> None:
    os.symlink(f"../{vf}", fs.pci(pf) / f"virtfn{n}")


def rep(fs: FakeSys, name: str, port_name: str, switch: str = SWITCH) -> None:
    d = fs.sys / "class/net" / name
    d.mkdir(parents=True)
    (d / "phys_switch_id").write_text(switch + "\n")
    (d / "phys_port_name").write_text(port_name + "\n")


@pytest.fixture
def fs(tmp_path: Path) -> FakeSys:
    fs = standard(tmp_path)
    switchdev(fs)
    virtfn(fs, "0000:65:00.0", 0, "0000:65:00.2")
    virtfn(fs, "0000:65:00.0", 1, "0000:65:00.3")
    rep(fs, "ens1f0", "p0")  # the uplink itself is on the switch too: never a representor
    rep(fs, "ens1f0_0", "pf0vf0")
    rep(fs, "ens1f0_1", "c1pf0vf1")  # the controller-prefixed form of multi-host / SmartNIC parts
    rep(fs, "ens1f1_1", "pf1vf1")  # same VF index on the other PF
    rep(fs, "other_0", "pf0vf0", switch="1111111111111111")  # same name on another e-switch
    return fs


def test_find_by_name_and_by_pci_address(fs: FakeSys) -> None:
    assert sysfs.find_device(fs.sys, fs.dev, "vdpa1").pci_address == "0000:65:00.3"
    assert sysfs.find_device(fs.sys, fs.dev, "0000:65:00.3").name == "vdpa1"
    with pytest.raises(VdpaLookupError, match="no vDPA device 'vdpa9'"):  # bound to an unknown driver
        sysfs.find_device(fs.sys, fs.dev, "vdpa9")
    fs.add_vdpa("0000:65:00.3", "vdpa7", index=7)
    with pytest.raises(VdpaLookupError, match="several vDPA devices"):
        sysfs.find_device(fs.sys, fs.dev, "0000:65:00.3")


def test_representor_by_switch_id_and_port_name(fs: FakeSys) -> None:
    pools = [VdpaPool(resource_name="vhostplug.io/mlx", selectors=VdpaSelectors(vdpa_type="vhost"))]
    t0 = sysfs.resolve(fs.sys, fs.dev, "vdpa0", pools)
    assert (t0.vf_index, t0.representor, t0.pool) == (0, "ens1f0_0", "vhostplug.io/mlx")
    t1 = sysfs.resolve(fs.sys, fs.dev, "0000:65:00.3", pools, want_pool="vhostplug.io/mlx")
    assert (t1.vf_index, t1.representor) == (1, "ens1f0_1")


def test_pf_index_comes_from_the_uplink_port_name(fs: FakeSys) -> None:
    (fs.pci("0000:65:00.0") / "net/ens1f0/phys_port_name").write_text("p1\n")
    assert sysfs.resolve(fs.sys, fs.dev, "vdpa1", []).representor == "ens1f1_1"


def test_each_bad_device_is_named(fs: FakeSys) -> None:
    pools = [VdpaPool(resource_name="vhostplug.io/virtio", selectors=VdpaSelectors(vdpa_type="virtio"))]
    with pytest.raises(VdpaLookupError, match="in none of this node's vDPA pools"):
        sysfs.resolve(fs.sys, fs.dev, "vdpa0", pools)
    with pytest.raises(VdpaLookupError, match=r"belongs to pool vhostplug\.io/virtio, not to vhostplug\.io/x"):
        sysfs.resolve(fs.sys, fs.dev, "vdpa3", pools, want_pool="vhostplug.io/x")
    (fs.dev / "vhost-vdpa-1").unlink()
    with pytest.raises(VdpaLookupError, match="vdpa1 is unhealthy"):
        sysfs.resolve(fs.sys, fs.dev, "vdpa1", [])
    with pytest.raises(VdpaLookupError, match="not listed by its PF"):  # vdpa2's PF has no virtfn links
        sysfs.resolve(fs.sys, fs.dev, "vdpa2", [])
    (fs.sys / "class/net/ens1f0_0/phys_port_name").write_text("pf0vf5\n")
    with pytest.raises(VdpaLookupError, match=r"no representor of VF 0 \(phys_port_name pf0vf0\)"):
        sysfs.resolve(fs.sys, fs.dev, "vdpa0", [])
    virtfn(fs, "0000:b3:00.0", 1, "0000:b3:00.3")  # ens2f0 is in legacy mode: no phys_switch_id
    with pytest.raises(VdpaLookupError, match=r"PF ens2f0 \(0000:b3:00\.0\) has no phys_switch_id"):
        sysfs.resolve(fs.sys, fs.dev, "vdpa3", [])


def test_a_pf_function_has_no_representor(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path)
    fs.add_pf("0000:17:00.0", "ens9")
    fs.add_vdpa("0000:17:00.0", "vdpa0", index=0)
    with pytest.raises(VdpaLookupError, match="no parent VF"):
        sysfs.resolve(fs.sys, fs.dev, "vdpa0", [])
