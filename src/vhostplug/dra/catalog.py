"""This node's devices of our driver, as published in its ResourceSlices: what Prepare needs to know about an
allocated ``(pool, device)`` that the claim does not say (its kind, its bridge, its vDPA device).

Read from the API server (the slices of this node and driver), cached, and read again when a device is not found
(a slice published since). Attribute names are read with or without our driver's domain prefix:

- ``kind``: ``vhostuser`` (default) or ``vdpa``;
- ``bridge``: the OVS bridge a vhost-user port goes on (vDPA: its representor's);
- ``vdpaDevice``: the vDPA device's name (``vdpa0``), for vDPA devices.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from vhostplug.dra.kubeapi import KubeApi
from vhostplug.model import DraDevice
from vhostplug.podinfo.devicemetadata import attribute_value

KINDS = ("vhostuser", "vdpa")


def devices_of(slices: list[dict[str, Any]], driver: str) -> dict[tuple[str, str], DraDevice]:
    out: dict[tuple[str, str], DraDevice] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != driver:
            continue
        pool = (spec.get("pool") or {}).get("name", "")
        for dev in spec.get("devices") or []:
            attrs: dict[str, Any] = {}
            for key, attr in (dev.get("attributes") or {}).items():
                short = key.removeprefix(driver + "/")
                attrs[short] = attribute_value(attr)
            kind = attrs.get("kind") if attrs.get("kind") in KINDS else "vhostuser"
            out[(pool, str(dev.get("name", "")))] = DraDevice(
                pool=pool,
                name=str(dev.get("name", "")),
                kind=str(kind),
                bridge=attrs.get("bridge") if isinstance(attrs.get("bridge"), str) else None,
                vdpa_device=attrs.get("vdpaDevice") if isinstance(attrs.get("vdpaDevice"), str) else None,
                attributes=tuple(sorted(attrs.items())),
            )
    return out


class SliceCatalog:
    """:class:`vhostplug.protocols.DeviceCatalog` over the API server's ResourceSlices of this node."""

    def __init__(self, api: KubeApi, node: str, driver: str, min_refresh_seconds: float = 0.5) -> None:
        self.api, self.node, self.driver = api, node, driver
        self._devices: dict[tuple[str, str], DraDevice] = {}
        self._read_at = -1e9
        self._min_refresh = min_refresh_seconds
        self._lock = threading.Lock()

    def lookup(self, pool: str, device: str) -> DraDevice | None:
        with self._lock:
            found = self._devices.get((pool, device))
            if found is None and time.monotonic() - self._read_at >= self._min_refresh:
                self._devices = devices_of(self.api.list_slices(self.node, self.driver), self.driver)
                self._read_at = time.monotonic()
                found = self._devices.get((pool, device))
            return found
