"""Find one vDPA device for the CNI (by vDPA name or PCI address) and its VF representor, from sysfs.

The device itself is read exactly as the vDPA pools read it (:func:`vhostplug.vdpa.discovery.discover`), so the CNI
and the device plugin agree on names, drivers, PF/VF and netdev. The representor is found as switchdev exposes it
(and as sriov-network-device-plugin / OVN-Kubernetes look for it)::

    <pf pci>/net/<pf netdev>/phys_switch_id        e.g. 0123456789abcdef   (the e-switch of the uplink)
    <pf pci>/net/<pf netdev>/phys_port_name        p0                      (uplink 0 -> PF index 0)
    <pf pci>/virtfn<N> -> ../<vf pci>                                      (VF index N)
    class/net/<rep>/phys_switch_id                 the same switch id
    class/net/<rep>/phys_port_name                 pf0vfN  (or c1pf0vfN on multi-host / SmartNIC parts)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vhostplug.configbase import PCI_RE
from vhostplug.vdpa.discovery import VdpaDevice, VdpaPool, discover, healthy, matches

_REP_RE = re.compile(r"^(?:c\d+)?pf(\d+)vf(\d+)$")
_UPLINK_RE = re.compile(r"^p(\d+)$")


class VdpaLookupError(Exception):
    """The device or its representor cannot be used; the message says which and why."""


@dataclass(frozen=True)
class VdpaTarget:
    """A vDPA device ready to attach: the device as the pool sees it, its VF index and its representor netdev."""

    device: VdpaDevice
    vf_index: int
    representor: str
    pool: str | None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # veth and other software netdevs answer EOPNOTSUPP for phys_* attributes
        return None


def find_device(sysfs_root: Path, dev_root: Path, ident: str) -> VdpaDevice:
    """The vDPA device named ``ident`` (``vdpa0``) or whose parent PCI function is ``ident`` (``0000:65:00.2``)."""
    devices = discover(sysfs_root, dev_root)
    if PCI_RE.match(ident.lower()):
        found = [d for d in devices if d.pci_address == ident.lower()]
        if len(found) > 1:
            names = ", ".join(d.name for d in found)
            raise VdpaLookupError(f"PCI function {ident} has several vDPA devices ({names}); give the vDPA name")
    else:
        found = [d for d in devices if d.name == ident]
    if not found:
        raise VdpaLookupError(
            f"no vDPA device {ident!r} bound to vhost_vdpa or virtio_vdpa under {Path(sysfs_root) / 'bus/vdpa/devices'}"
        )
    return found[0]


def pool_of(dev: VdpaDevice, pools: list[VdpaPool]) -> str | None:
    """The resource name of the first pool whose selectors take ``dev`` (the device plugin's order)."""
    return next((p.resource_name for p in pools if matches(dev, p.selectors)), None)


def _vf_dir(sysfs_root: Path, dev: VdpaDevice) -> Path:
    """The parent PCI function's real folder, through the vDPA bus link (as discovery found it)."""
    return Path(os.path.realpath(Path(sysfs_root) / "bus/vdpa/devices" / dev.name)).parent


def _pf_dir(sysfs_root: Path, dev: VdpaDevice) -> Path:
    return Path(os.path.realpath(_vf_dir(sysfs_root, dev) / "physfn"))


def vf_index(sysfs_root: Path, dev: VdpaDevice) -> int:
    """The VF's index on its PF, from the PF's ``virtfn<N>`` links."""
    if not dev.pci_address or not dev.pf_pci_address:
        raise VdpaLookupError(f"vDPA device {dev.name} has no parent VF (no physfn link): no representor to find")
    vf_real = _vf_dir(sysfs_root, dev)
    pf = _pf_dir(sysfs_root, dev)
    try:
        links = [p for p in pf.iterdir() if p.name.startswith("virtfn") and p.name[6:].isdigit()]
    except OSError:
        links = []
    for link in links:
        if Path(os.path.realpath(link)) == vf_real:
            return int(link.name[6:])
    raise VdpaLookupError(f"VF {dev.pci_address} is not listed by its PF {dev.pf_pci_address} (no virtfnN link)")


def representor(sysfs_root: Path, dev: VdpaDevice, vf: int) -> str:
    """The representor netdev of VF ``vf`` on the PF's e-switch (switchdev mode)."""
    if not dev.pf_pci_address or not dev.pf_name:
        raise VdpaLookupError(f"vDPA device {dev.name}: its PF has no netdev, so no e-switch to look on")
    uplink = _pf_dir(sysfs_root, dev) / "net" / dev.pf_name
    switch_id = _read(uplink / "phys_switch_id")
    if not switch_id:
        raise VdpaLookupError(
            f"PF {dev.pf_name} ({dev.pf_pci_address}) has no phys_switch_id: is its e-switch in switchdev mode?"
        )
    m = _UPLINK_RE.match(_read(uplink / "phys_port_name") or "p0")
    pf_index = int(m.group(1)) if m else 0
    class_net = Path(sysfs_root) / "class/net"
    try:
        names = sorted(p.name for p in class_net.iterdir())
    except OSError:
        names = []
    for name in names:
        if name == dev.pf_name or _read(class_net / name / "phys_switch_id") != switch_id:
            continue
        rep = _REP_RE.match(_read(class_net / name / "phys_port_name") or "")
        if rep and int(rep.group(1)) == pf_index and int(rep.group(2)) == vf:
            return name
    raise VdpaLookupError(
        f"no representor of VF {vf} (phys_port_name pf{pf_index}vf{vf}) on the e-switch {switch_id} of PF {dev.pf_name}"
    )


def resolve(
    sysfs_root: Path, dev_root: Path, ident: str, pools: list[VdpaPool], want_pool: str | None = None
) -> VdpaTarget:
    """Everything ADD needs, checked before any side effect: device, health, pool membership, representor."""
    dev = find_device(sysfs_root, dev_root, ident)
    if not healthy(dev):
        raise VdpaLookupError(f"vDPA device {dev.name} is unhealthy: {dev.health_path} is missing")
    pool = pool_of(dev, pools) if pools else None
    if pools and pool is None:
        raise VdpaLookupError(f"vDPA device {dev.name} is in none of this node's vDPA pools")
    if want_pool and pool != want_pool:
        raise VdpaLookupError(f"vDPA device {dev.name} belongs to pool {pool}, not to {want_pool}")
    vf = vf_index(sysfs_root, dev)
    return VdpaTarget(dev, vf, representor(sysfs_root, dev, vf), pool)
