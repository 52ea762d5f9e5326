"""The lab's stand-in vDPA hardware, for the demo and the tests on a host without vDPA hardware or a vDPA bus.

A sysfs tree laid out as the kernel lays out a switchdev NIC (PF with ``phys_switch_id``, VFs listed by ``virtfnN``,
vDPA devices on the VFs, representors ``pf0vfN`` under ``class/net``), whose netdev names are real kernel objects: each
VF is a veth pair, one end playing the ``virtio_vdpa`` netdev and the other the representor; a ``vhost_vdpa`` device
gets a real character device node (``mknod``) as ``/dev/vhost-vdpa-N`` under the tree's dev root. Everything made is
removed by :meth:`StandIn.remove`.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PCI_BUS = "devices/pci0000:00"
SWITCH_ID = "0123456789abcdef"
#: major number of our char nodes: the kernel's "experimental" range, never a real driver
CHAR_MAJOR = 240


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class StandInVf:
    vdpa: str
    pci: str
    vf: int
    driver: str  # "virtio" | "vhost"
    netdev: str = ""  # the virtio netdev (veth end) in the host
    representor: str = ""
    chardev: str = ""


@dataclass
class StandIn:
    root: Path
    pf_pci: str = "0000:65:00.0"
    pf_name: str = "ens1f0"
    #: the network namespace (name) of the switch that opens the representors (a private OVS runs in its own)
    switch_netns: str | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    vfs: list[StandInVf] = field(default_factory=list)

    @property
    def sys(self) -> Path:
        return self.root / "sys"

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    def pci(self, addr: str) -> Path:
        return self.sys / PCI_BUS / addr

    def _function(self, addr: str, device: str, pf: str | None = None) -> Path:
        """A Mellanox PCI function (NUMA 0, mlx5_core); a VF links its PF as ``physfn``."""
        fn = self.pci(addr)
        for name, value in (("vendor", "0x15b3"), ("device", device), ("numa_node", "0")):
            _write(fn / name, value)
        os.symlink("../../../bus/pci/drivers/mlx5_core", fn / "driver")
        if pf:
            os.symlink(f"../{pf}", fn / "physfn")
        return fn

    def build_pf(self) -> None:
        """The vDPA bus and drivers, the PF and its uplink netdev's switchdev attributes."""
        for d in ("bus/vdpa/devices", "bus/vdpa/drivers/vhost_vdpa", "bus/vdpa/drivers/virtio_vdpa", "class/net"):
            (self.sys / d).mkdir(parents=True, exist_ok=True)
        self.dev.mkdir(parents=True, exist_ok=True)
        uplink = self._function(self.pf_pci, "0x101d") / "net" / self.pf_name
        _write(uplink / "phys_switch_id", SWITCH_ID)
        _write(uplink / "phys_port_name", "p0")

    def add(self, vf: int, driver: str, with_representor: bool = True) -> StandInVf:
        """VF ``vf`` with vDPA device ``vdpa<vf>`` bound to ``driver``, its veth pair (virtio) / char node (vhost)."""
        pci = f"0000:65:00.{vf + 2}" if vf < 6 else f"0000:65:01.{vf - 6}"
        fn = self._function(pci, "0x101e", pf=self.pf_pci)
        os.symlink(f"../{pci}", self.pci(self.pf_pci) / f"virtfn{vf}")
        item = StandInVf(f"vdpa{vf}", pci, vf, driver, representor=f"vr{self.tag}{vf}")
        d = fn / item.vdpa
        d.mkdir()
        if driver == "virtio":
            item.netdev = f"vv{self.tag}{vf}"
            os.symlink("../../../../bus/vdpa/drivers/virtio_vdpa", d / "driver")
            (d / f"virtio{vf}" / "net" / item.netdev).mkdir(parents=True)
        else:
            item.chardev = f"vhost-vdpa-{vf}"
            os.symlink("../../../../bus/vdpa/drivers/vhost_vdpa", d / "driver")
            _write(d / item.chardev / "dev", f"{CHAR_MAJOR}:{vf}")
            os.mknod(self.dev / item.chardev, 0o600 | stat.S_IFCHR, os.makedev(CHAR_MAJOR, vf))
        os.symlink(f"../../../{PCI_BUS}/{pci}/{item.vdpa}", self.sys / "bus/vdpa/devices" / item.vdpa)
        peer = item.netdev or f"vx{self.tag}{vf}"  # vhost: the veth's other end plays the VF's own port
        _ip("link", "add", item.representor, "type", "veth", "peer", "name", peer)
        if self.switch_netns:
            _ip("link", "set", item.representor, "netns", self.switch_netns)
        if with_representor:
            _write(self.sys / "class/net" / item.representor / "phys_switch_id", SWITCH_ID)
            _write(self.sys / "class/net" / item.representor / "phys_port_name", f"pf0vf{vf}")
        self.vfs.append(item)
        return item

    def remove(self) -> list[str]:
        return remove(self.root, self.switch_netns, [item.representor for item in self.vfs])


def remove(root: Path, switch_netns: str | None, representors: list[str]) -> list[str]:
    """Delete the veth pairs wherever their representor end is (deleting one end deletes both) and the tree; from
    recorded facts alone (``vhostplug lab down`` after a crash). Returns what it did."""
    done = []
    ns = ["-n", switch_netns] if switch_netns else []
    for rep in representors:
        for args in (["link", "del", rep], [*ns, "link", "del", rep]):
            if subprocess.run(["ip", *args], capture_output=True, check=False).returncode == 0:
                done.append(f"deleted stand-in vDPA veth pair {rep}")
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
        done.append(f"removed stand-in vDPA tree {root}")
    return done


def build(root: Path, virtio: int = 2, vhost: int = 1, switch_netns: str | None = None) -> StandIn:
    """A PF with ``virtio`` virtio-vdpa VFs (vdpa0..) then ``vhost`` vhost-vdpa VFs."""
    s = StandIn(root, switch_netns=switch_netns)
    s.build_pf()
    try:
        for i in range(virtio + vhost):
            s.add(i, "virtio" if i < virtio else "vhost")
    except BaseException:
        s.remove()
        raise
    return s
