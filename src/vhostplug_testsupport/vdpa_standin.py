"""Stand-in vDPA parts for tests and benchmarks on a host without vDPA hardware or a vDPA bus.

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

from vhostplug_testsupport.fakesys import FakeSys

SWITCH_ID = "0123456789abcdef"
#: major number of our char nodes: the kernel's "experimental" range, never a real driver
CHAR_MAJOR = 240


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

    def __post_init__(self) -> None:
        self.fake = FakeSys(self.root)

    @property
    def sys(self) -> Path:
        return self.fake.sys

    @property
    def dev(self) -> Path:
        return self.fake.dev

    def pci(self, addr: str) -> Path:
        return self.fake.pci(addr)

    def build_pf(self) -> None:
        """The PF (the pools' fake mlx5 PF) with its uplink's switchdev attributes."""
        self.fake.add_pf(self.pf_pci, self.pf_name)
        uplink = self.pci(self.pf_pci) / "net" / self.pf_name
        (uplink / "phys_switch_id").write_text(SWITCH_ID + "\n")
        (uplink / "phys_port_name").write_text("p0\n")
        (self.sys / "class/net").mkdir(parents=True, exist_ok=True)

    def add(self, vf: int, driver: str, with_representor: bool = True) -> StandInVf:
        """VF ``vf`` with vDPA device ``vdpa<vf>`` bound to ``driver``, its veth pair (virtio) / char node (vhost)."""
        pci = f"0000:65:00.{vf + 2}" if vf < 6 else f"0000:65:01.{vf - 6}"
        self.fake.add_vf(pci, self.pf_pci)
        os.symlink(f"../{pci}", self.pci(self.pf_pci) / f"virtfn{vf}")
        item = StandInVf(f"vdpa{vf}", pci, vf, driver, representor=f"vr{self.tag}{vf}")
        if driver == "virtio":
            item.netdev = f"vv{self.tag}{vf}"
            self.fake.add_vdpa(pci, item.vdpa, "virtio_vdpa", index=vf, netdev=item.netdev)
        else:
            item.chardev = f"vhost-vdpa-{vf}"
            self.fake.add_vdpa(pci, item.vdpa, "vhost_vdpa", index=vf)
            node = self.dev / item.chardev
            node.unlink()  # the pools' fake writes a plain file: a real char node instead
            os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(CHAR_MAJOR, vf))
        peer = item.netdev or f"vx{self.tag}{vf}"  # vhost: the veth's other end plays the VF's own port
        _ip("link", "add", item.representor, "type", "veth", "peer", "name", peer)
        if self.switch_netns:
            _ip("link", "set", item.representor, "netns", self.switch_netns)
        if with_representor:
            rep = self.sys / "class/net" / item.representor
            rep.mkdir(parents=True)
            (rep / "phys_switch_id").write_text(SWITCH_ID + "\n")
            (rep / "phys_port_name").write_text(f"pf0vf{vf}\n")
        self.vfs.append(item)
        return item

    def remove(self) -> None:
        """Delete the veth pairs wherever their representor end is (deleting one end deletes both) and the tree."""
        ns = ["-n", self.switch_netns] if self.switch_netns else []
        for item in self.vfs:
            for args in (["link", "del", item.representor], [*ns, "link", "del", item.representor]):
                subprocess.run(["ip", *args], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


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
