"""vDPA pools as kubelet resources: the device plugin's ``vdpa`` config section, one device source per pool (whose
members each rescan of :func:`vhostplug.vdpa.discovery.discover` replaces), and their Allocate.

A device ID is the vDPA device name (``vdpa0``): unique on the node, short, and what the ``vdpa`` tool shows.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field

from vhostplug import deviceinfo
from vhostplug.configbase import SectionModel
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.types import NodeContext, describe_ids
from vhostplug.protocols import AllocateError, DeviceState
from vhostplug.vdpa.discovery import VdpaDevice, VdpaPool, discover, healthy, matches

log = logging.getLogger(__name__)


class VdpaConfig(SectionModel):
    """The ``vdpa`` section: where sysfs and /dev are, how often to rescan, and the pools (each one resource)."""

    sysfs_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    rescan_seconds: float = Field(default=10.0, gt=0, le=3600)
    pools: list[VdpaPool] = Field(default_factory=list)

    def resource_names(self) -> list[str]:
        return [p.resource_name for p in self.pools]


def env_base(resource_name: str) -> str:
    """``vhostplug.io/vdpa_mlx`` -> ``PCIDEVICE_VHOSTPLUG_IO_VDPA_MLX`` (as the SR-IOV device plugin names it)."""
    return "PCIDEVICE_" + re.sub(r"[^A-Z0-9]", "_", resource_name.upper())


class VdpaPoolDevices:
    """The devices of one pool (one resource name); membership is replaced by each rescan."""

    def __init__(self, pool: VdpaPool, devinfo_dir: Path) -> None:
        self.pool = pool
        self.resource_name = pool.resource_name
        self.devinfo_dir = Path(devinfo_dir)
        self._devices: dict[str, VdpaDevice] = {}
        self._seen: set[str] = set()

    def update(self, devices: Sequence[VdpaDevice]) -> None:
        new = {d.name: d for d in devices}
        if new.keys() != self._devices.keys():
            log.info("%s: devices now %s", self.resource_name, sorted(new))
        self._devices = new
        self._seen |= new.keys()

    def poll(self) -> list[DeviceState]:
        return [DeviceState(d.name, healthy(d), d.numa) for d in self._devices.values()]

    def check(self, ids: Sequence[str]) -> None:
        """Raise :class:`AllocateError` when ``ids`` cannot be allocated now; touches nothing."""
        devices = self._devices
        unknown = [i for i in ids if i not in devices]
        if not ids or unknown:
            raise AllocateError(grpc.StatusCode.NOT_FOUND, f"unknown vDPA devices {describe_ids(unknown or ids)}")
        if len(set(ids)) != len(ids):
            raise AllocateError(grpc.StatusCode.INVALID_ARGUMENT, f"vDPA devices repeated in {describe_ids(ids)}")
        gone = [i for i in ids if not healthy(devices[i])]
        if gone:
            raise AllocateError(
                grpc.StatusCode.FAILED_PRECONDITION, f"vDPA devices {describe_ids(gone)} lost their char device"
            )

    def allocate(self, ids: Sequence[str]) -> pb.ContainerAllocateResponse:
        devices = dict(self._devices)
        self.check(ids)
        base = env_base(self.resource_name)
        resp = pb.ContainerAllocateResponse()
        info: dict[str, Any] = {}
        netdevs = []
        for i in ids:
            dev = devices[i]
            vdpa_info: dict[str, str] = {"name": dev.name, "driver": dev.driver}
            if dev.chardev:
                resp.devices.add(container_path=dev.container_path, host_path=str(dev.health_path), permissions="rw")
                vdpa_info["mount"] = dev.container_path
            if dev.netdev:
                netdevs.append(dev.netdev)
                vdpa_info["netdev"] = dev.netdev
            info[dev.pci_address or dev.name] = {
                "generic": {"deviceID": dev.pci_address or dev.name},
                "vdpa": vdpa_info,
            }
        resp.envs[base] = ",".join(dev.pci_address or dev.name for dev in (devices[i] for i in ids))
        resp.envs[f"{base}_INFO"] = json.dumps(info, sort_keys=True, separators=(",", ":"))
        if netdevs:
            resp.envs[f"{base}_NETDEVS"] = ",".join(netdevs)
        for i in ids:
            dev = devices[i]
            spec = deviceinfo.vdpa(dev.name, dev.driver, dev.container_path, dev.pci_address, dev.pf_pci_address)
            deviceinfo.write_dp(self.devinfo_dir, self.resource_name, i, spec)
        return resp

    def cleanup(self) -> None:
        """Remove the dp device-info files of every device this pool has held."""
        for i in self._seen | self._devices.keys():
            deviceinfo.remove_dp(self.devinfo_dir, self.resource_name, i)


@dataclass
class VdpaKind:
    """The kind: one source per configured pool; a rescan reads sysfs and gives each device to the first pool whose
    selectors match it."""

    config: VdpaConfig
    pools: list[VdpaPoolDevices]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sources(self) -> Sequence[VdpaPoolDevices]:
        return self.pools

    @property
    def rescan_seconds(self) -> float | None:
        return self.config.rescan_seconds if self.pools else None

    def rescan(self) -> None:
        if not self.pools:
            return
        with self._lock:
            devices = discover(self.config.sysfs_root, self.config.dev_root)
            taken: set[str] = set()
            for pool in self.pools:
                mine = [d for d in devices if d.name not in taken and matches(d, pool.pool.selectors)]
                taken |= {d.name for d in mine}
                pool.update(mine)


def build(node: NodeContext, config: VdpaConfig) -> VdpaKind:
    return VdpaKind(config, [VdpaPoolDevices(p, node.devinfo_dir) for p in config.pools])
