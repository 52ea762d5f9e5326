"""Discovery of the node's vDPA devices from sysfs, and the pool selectors that sort them: one reading shared by the
device plugin's pools, the CNI's device lookup (:mod:`vhostplug.vdpa.sysfs`) and DRA, so all agree on names, drivers,
PF/VF and netdev.

Sysfs layout read (paths relative to the configured sysfs root, usually ``/sys``)::

    bus/vdpa/devices/vdpa0 -> ../../../devices/pci0000:00/0000:65:00.2/vdpa0     (parent = the PCI function)
    bus/vdpa/devices/vdpa0/driver -> .../bus/vdpa/drivers/vhost_vdpa | virtio_vdpa
    .../vdpa0/vhost-vdpa-0/               vhost_vdpa: the char device, /dev/vhost-vdpa-0 under the dev root
    .../vdpa0/virtio1/net/eth5            virtio_vdpa: the kernel netdev (also looked for under the parent)
    .../0000:65:00.2/{vendor,device,numa_node}, driver -> mlx5_core, physfn -> ../0000:65:00.0 (VF), net/<pf netdev>
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from vhostplug import fsutil
from vhostplug.configbase import PCI_RE, SectionModel, check_resource_name

log = logging.getLogger(__name__)

VDPA_BUS = Path("bus/vdpa/devices")
MAX_DEVICE_ID = 63
DRIVERS = {"vhost_vdpa": "vhost", "virtio_vdpa": "virtio"}


_HEX_ID_RE = re.compile(r"^[0-9a-f]{4}$")


class VdpaSelectors(SectionModel):
    """Which vDPA devices a pool takes. Every given selector must match; within one list any value matches."""

    vendors: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    drivers: list[str] = Field(default_factory=list)
    pci_addresses: list[str] = Field(default_factory=list)
    pf_names: list[str] = Field(default_factory=list)
    vdpa_type: Literal["vhost", "virtio"] | None = None

    @field_validator("vendors", "devices")
    @classmethod
    def _hex_ids(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            norm = item.lower().removeprefix("0x")
            if not _HEX_ID_RE.match(norm):
                raise ValueError(f"{item!r} is not a 4-digit hex PCI id such as '15b3'")
            out.append(norm)
        return out

    @field_validator("pci_addresses")
    @classmethod
    def _pci(cls, v: list[str]) -> list[str]:
        for item in v:
            if not PCI_RE.match(item):
                raise ValueError(f"{item!r} is not a PCI address such as '0000:65:00.2'")
        return v

    @field_validator("drivers", "pf_names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for item in v:
            fsutil.check_component(item)
        return v


class VdpaPool(SectionModel):
    resource_name: str
    selectors: VdpaSelectors = VdpaSelectors()

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, v: str) -> str:
        return check_resource_name(v)


@dataclass(frozen=True)
class VdpaDevice:
    """One vDPA device bound to vhost_vdpa or virtio_vdpa, with what we know of its parent PCI function."""

    name: str
    driver: str  # "vhost" | "virtio"
    health_path: Path  # the char device under the dev root (vhost) or the netdev's sysfs folder (virtio)
    chardev: str | None = None  # vhost-vdpa-N
    netdev: str | None = None
    pci_address: str | None = None
    vendor: str | None = None
    device: str | None = None
    pci_driver: str | None = None
    pf_pci_address: str | None = None
    pf_name: str | None = None
    numa: int | None = None

    @property
    def container_path(self) -> str:
        """Where the device appears in the container: ``/dev/vhost-vdpa-N`` or the netdev's name."""
        return f"/dev/{self.chardev}" if self.chardev else (self.netdev or "")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _link_name(path: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _children(path: Path, prefix: str) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def _first_netdev(path: Path) -> str | None:
    nets = _children(path / "net", "")
    return nets[0].name if nets else None


def _virtio_netdev(*places: Path) -> tuple[str, Path] | None:
    for place in places:
        for virtio in _children(place, "virtio"):
            nets = _children(virtio / "net", "")
            if nets:
                return nets[0].name, nets[0]
    return None


def _hex_id(value: str | None) -> str | None:
    return value.lower().removeprefix("0x") if value else None


def _pci_info(parent: Path) -> dict[str, Any]:
    if not PCI_RE.match(parent.name) or not (parent / "vendor").exists():
        return {}
    numa_text = _read(parent / "numa_node")
    numa = int(numa_text) if numa_text and numa_text.lstrip("-").isdigit() and int(numa_text) >= 0 else None
    info: dict[str, Any] = {
        "pci_address": parent.name,
        "vendor": _hex_id(_read(parent / "vendor")),
        "device": _hex_id(_read(parent / "device")),
        "pci_driver": _link_name(parent / "driver"),
        "numa": numa,
    }
    if (parent / "physfn").is_symlink():
        pf = Path(os.path.realpath(parent / "physfn"))
        info["pf_pci_address"] = pf.name
        info["pf_name"] = _first_netdev(pf)
    else:
        info["pf_name"] = _first_netdev(parent)
    return info


def discover(sysfs_root: Path, dev_root: Path) -> list[VdpaDevice]:
    """Every vDPA device under ``<sysfs_root>/bus/vdpa/devices`` bound to a known driver, sorted by name."""
    found: list[VdpaDevice] = []
    for entry in _children(Path(sysfs_root) / VDPA_BUS, ""):
        if len(entry.name) > MAX_DEVICE_ID:
            log.warning(
                "vdpa %s: name longer than %d characters cannot be a device ID, skipped", entry.name, MAX_DEVICE_ID
            )
            continue
        driver = DRIVERS.get(_link_name(entry / "driver") or "")
        if driver is None:
            log.debug("vdpa %s: not bound to vhost_vdpa or virtio_vdpa, skipped", entry.name)
            continue
        real = Path(os.path.realpath(entry))
        pci = _pci_info(real.parent)
        if driver == "vhost":
            chars = [p for p in _children(real, "vhost-vdpa-") if p.is_dir()]
            if not chars:
                log.info("vdpa %s: bound to vhost_vdpa but no vhost-vdpa-N child yet", entry.name)
                continue
            name = chars[0].name
            found.append(VdpaDevice(entry.name, driver, Path(dev_root) / name, chardev=name, **pci))
        else:
            net = _virtio_netdev(real, real.parent)
            if net is None:
                log.info("vdpa %s: bound to virtio_vdpa but no netdev yet", entry.name)
                continue
            found.append(VdpaDevice(entry.name, driver, net[1], netdev=net[0], **pci))
    return found


def matches(dev: VdpaDevice, sel: VdpaSelectors) -> bool:
    """All given selectors must match; an empty list matches anything."""
    checks: list[tuple[list[str], str | None]] = [
        (sel.vendors, dev.vendor),
        (sel.devices, dev.device),
        (sel.drivers, dev.pci_driver),
        (sel.pci_addresses, dev.pci_address),
        (sel.pf_names, dev.pf_name),
    ]
    if any(wanted and value not in wanted for wanted, value in checks):
        return False
    return sel.vdpa_type is None or sel.vdpa_type == dev.driver


def healthy(dev: VdpaDevice) -> bool:
    """The char device (vhost) or the netdev's sysfs folder (virtio) is there."""
    return os.path.exists(dev.health_path)
