"""What this node publishes as ``resource.k8s.io/v1`` ResourceSlices: its devices, built from the node policy and the
vDPA pools, and the slices (one pool named after the node, at most 128 devices per slice) that carry them.

Devices (names are DNS labels; attribute names are in the driver's domain, so a CEL selector reads them as
``device.attributes["vhostuser.vhostplug.io"].bridge``):

- ``vhu-<bridge>-<n>``: vhost-user port slots per allowed bridge (``dra.slices.slotsPerBridge``) with ``kind``
  ``"vhostuser"``, ``bridge``, ``datapathType``, ``numaNode`` (when configured), ``serverMode`` / ``clientMode``;
- ``vdpa-<name>``: each vDPA device the ``devicePlugin.vdpa`` pools find, with ``kind`` ``"vdpa"``,
  ``vdpaDevice``, ``vdpaType`` (``vhost``/``virtio``), ``pciAddress``, ``pciDriver``, ``pciVendor``, ``pciDevice``,
  ``pfName``, ``numaNode``, ``vdpaPool`` (the pool's resource name) and ``bridge`` (where its representor goes).

Nothing is published for a bridge the node policy does not allow: slots come only from ``bridges.allowed``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from vhostplug.cni.policy import NodePolicy
from vhostplug.dra.sliceconfig import SlicesConfig
from vhostplug.model import Mode
from vhostplug.vdpa.discovery import VdpaDevice, VdpaPool, matches

JSON = dict[str, Any]
API_VERSION = "resource.k8s.io/v1"
#: resource.k8s.io/v1 limits (ResourceSliceMaxDevices, attribute string length)
MAX_DEVICES_PER_SLICE = 128
MAX_STRING = 64
KIND_VHOSTUSER = "vhostuser"
KIND_VDPA = "vdpa"
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


def dns_label(text: str, limit: int = 63) -> str:
    """``text`` as a DNS label of at most ``limit`` bytes; when it had to change, a short hash of the original keeps
    two different inputs apart (``br_DPDK`` -> ``br-dpdk-1a2b3c``)."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")
    if label == text and len(label) <= limit:
        return label
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{label[: limit - 7].strip('-')}-{digest}".lstrip("-")


def _attrs(values: dict[str, str | int | bool | None]) -> JSON:
    out: JSON = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = {"bool": value}
        elif isinstance(value, int):
            out[key] = {"int": value}
        elif len(value) <= MAX_STRING:
            out[key] = {"string": value}
    return out


def check_config(policy: NodePolicy, config: SlicesConfig) -> None:
    """Refuse settings for bridges the node policy does not allow (ValueError naming the key)."""
    for bridge in config.bridges:
        if bridge not in policy.bridges:
            allowed = ", ".join(policy.bridges)
            raise ValueError(f"dra.slices.bridges.{bridge}: not one of bridges.allowed ({allowed})")


def vhostuser_devices(policy: NodePolicy, config: SlicesConfig) -> list[JSON]:
    """The vhost-user port slots of every allowed bridge."""
    out = []
    for bridge in policy.bridges:
        per = config.bridges.get(bridge)
        slots = per.slots if per is not None and per.slots is not None else config.slots_per_bridge
        modes = per.modes if per is not None else [Mode.SERVER, Mode.CLIENT]
        attributes = _attrs(
            {
                "kind": KIND_VHOSTUSER,
                "bridge": bridge,
                "datapathType": policy.datapath_type,
                "numaNode": per.numa_node if per is not None else None,
                "serverMode": Mode.SERVER in modes,
                "clientMode": Mode.CLIENT in modes,
            }
        )
        label = dns_label(bridge, 40)
        out += [{"name": f"vhu-{label}-{i}", "attributes": attributes} for i in range(slots)]
    return out


def vdpa_devices(found: Sequence[VdpaDevice], pools: Sequence[VdpaPool], policy: NodePolicy) -> list[JSON]:
    """The vDPA devices one of ``pools`` takes (the first pool that matches, as the device plugin sorts them)."""
    out = []
    for dev in found:
        pool = next((p for p in pools if matches(dev, p.selectors)), None)
        if pool is None:
            continue
        attributes = _attrs(
            {
                "kind": KIND_VDPA,
                "vdpaDevice": dev.name,
                "vdpaType": dev.driver,
                "pciAddress": dev.pci_address,
                "pciDriver": dev.pci_driver,
                "pciVendor": dev.vendor,
                "pciDevice": dev.device,
                "pfName": dev.pf_name,
                "numaNode": dev.numa,
                "vdpaPool": pool.resource_name,
                "bridge": policy.bridges[0],
                "datapathType": policy.datapath_type,
            }
        )
        out.append({"name": f"vdpa-{dns_label(dev.name, 58)}", "attributes": attributes})
    return out


def node_devices(
    policy: NodePolicy, config: SlicesConfig, found: Sequence[VdpaDevice] = (), pools: Sequence[VdpaPool] = ()
) -> list[JSON]:
    """Every device this node publishes, in a stable order; names are unique (a clash is a ValueError)."""
    devices = vhostuser_devices(policy, config)
    if config.vdpa:
        devices += vdpa_devices(found, pools, policy)
    names = [d["name"] for d in devices]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"device names clash: {', '.join(dupes[:5])} (bridge or vDPA names map to the same label)")
    return devices


def slice_specs(node: str, driver: str, devices: Sequence[JSON], generation: int) -> list[JSON]:
    """The specs of the pool's slices: the devices in order, at most 128 per slice, all of one generation."""
    chunks = [list(devices[i : i + MAX_DEVICES_PER_SLICE]) for i in range(0, len(devices), MAX_DEVICES_PER_SLICE)]
    pool = {"name": node, "generation": generation, "resourceSliceCount": len(chunks)}
    return [{"driver": driver, "nodeName": node, "pool": dict(pool), "devices": chunk} for chunk in chunks]
