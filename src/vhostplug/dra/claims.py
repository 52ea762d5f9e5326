"""From a ResourceClaim as the API server has it to what this node must prepare: the claim's identity, and per
allocated device of our driver its request, pool, device and the opaque configuration that applies to it.

Every refusal is a :class:`ClaimError` naming what is wrong (kubelet shows it in the pod's events): another UID than
kubelet asked for, no allocation, no device of our driver, an allocation for another node, a device this node does
not publish, a bad opaque configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vhostplug.dra import opaque
from vhostplug.dra.layout import POD_CLAIM_NAME_ANNOTATION, ClaimRef
from vhostplug.model import DraDevice
from vhostplug.protocols import DeviceCatalog


class ClaimError(Exception):
    """This claim cannot be prepared on this node; the message says why."""


@dataclass(frozen=True)
class AllocatedDevice:
    request: str
    pool: str
    device: str
    catalog: DraDevice
    config: opaque.DeviceConfig


@dataclass(frozen=True)
class ClaimPlan:
    ref: ClaimRef
    devices: tuple[AllocatedDevice, ...]


def _base_request(request: str) -> str:
    """``req/subreq`` (a firstAvailable subrequest) belongs to ``req``."""
    return request.split("/", 1)[0]


def _applies(config: dict[str, Any], request: str) -> bool:
    names = config.get("requests") or []
    return not names or request in names or _base_request(request) in names


def _on_node(allocation: dict[str, Any], node: str) -> bool:
    """Whether the allocation's nodeSelector (if any) can select this node by name; a selector on labels only is
    left to the scheduler (kubelet only calls the node it chose)."""
    selector = allocation.get("nodeSelector")
    if not selector:
        return True
    saw_name_term = False
    for term in selector.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                saw_name_term = True
                if node in (field.get("values") or []):
                    return True
    return not saw_name_term


def plan(claim: dict[str, Any], uid: str, driver: str, node: str, catalog: DeviceCatalog) -> ClaimPlan:
    meta = claim.get("metadata") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    where = f"claim {ns}/{name}"
    if meta.get("uid") != uid:
        raise ClaimError(f"{where} has UID {meta.get('uid')!r}, kubelet asked for {uid!r} (deleted and recreated?)")
    annotations = meta.get("annotations") or {}
    ref = ClaimRef(ns, name, uid, annotations.get(POD_CLAIM_NAME_ANNOTATION) or None)
    allocation = (claim.get("status") or {}).get("allocation")
    if not allocation:
        raise ClaimError(f"{where} is not allocated (status.allocation is empty)")
    if not _on_node(allocation, node):
        raise ClaimError(f"{where} is allocated to another node, not {node}")
    devices = allocation.get("devices") or {}
    results = devices.get("results") or []
    ours = [r for r in results if r.get("driver") == driver]
    if not ours:
        others = ", ".join(f"{r.get('driver')}/{r.get('pool')}/{r.get('device')}" for r in results) or "none"
        raise ClaimError(f"{where} has no device of driver {driver} (allocated: {others})")
    configs = [c for c in devices.get("config") or [] if (c.get("opaque") or {}).get("driver") == driver]
    out: list[AllocatedDevice] = []
    for r in ours:
        request, pool, device = str(r.get("request", "")), str(r.get("pool", "")), str(r.get("device", ""))
        if not request or not pool or not device:
            raise ClaimError(f"{where}: an allocation result lacks request, pool or device: {r}")
        found = catalog.lookup(pool, device)
        if found is None:
            raise ClaimError(f"{where}: device {pool}/{device} is not a device of driver {driver} on node {node}")
        # DeviceClass configs first, then the claim's own, each in order (status.allocation.devices.config holds both)
        ordered = sorted(configs, key=lambda c: 0 if c.get("source") == "FromClass" else 1)
        params = [c["opaque"].get("parameters") or {} for c in ordered if _applies(c, request)]
        try:
            config = opaque.parse(params)
        except opaque.ConfigError as exc:
            raise ClaimError(f"{where}, request {request}: {exc}") from None
        kind_wanted = "VdpaConfig" if found.kind == "vdpa" else "VhostUserConfig"
        if params and config.kind != kind_wanted:
            raise ClaimError(
                f"{where}, request {request}: device {pool}/{device} is a {found.kind} device; "
                f"its opaque config must be kind {kind_wanted}, not {config.kind}"
            )
        if found.kind == "vhostuser" and not found.bridge:
            raise ClaimError(f"{where}: device {pool}/{device} names no bridge in its ResourceSlice")
        out.append(AllocatedDevice(_base_request(request), pool, device, found, config))
    requests = [d.request for d in out]
    if len(set(requests)) != len(requests):
        raise ClaimError(f"{where}: more than one device of driver {driver} per request is not supported ({requests})")
    return ClaimPlan(ref, tuple(out))
