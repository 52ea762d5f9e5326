"""resource.k8s.io/v1 objects as a cluster would hold them for the DRA tests and benches: this node's
ResourceSlice of vhost-user port slots, and ResourceClaims allocated by a scheduler (results, the opaque config
copied from the claim, the node selector), seeded into the stand-in kube-apiserver."""

from __future__ import annotations

import uuid
from typing import Any

from vhostplug.dra.config import DRIVER_NAME

API = "resource.k8s.io/v1"


def slice_of(node: str, bridge: str, count: int, driver: str = DRIVER_NAME, prefix: str = "vu") -> dict[str, Any]:
    devices = [
        {
            "name": f"{prefix}-{i:03d}",
            "attributes": {"kind": {"string": "vhostuser"}, "bridge": {"string": bridge}},
        }
        for i in range(count)
    ]
    return {
        "apiVersion": API,
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{driver}-{bridge}".lower().replace("_", "-")},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def claim(
    name: str,
    node: str,
    devices: list[tuple[str, str]],
    *,
    namespace: str = "default",
    driver: str = DRIVER_NAME,
    pool: str | None = None,
    params: dict[str, Any] | None = None,
    pod_claim_name: str | None = None,
    allocated: bool = True,
    uid: str | None = None,
) -> dict[str, Any]:
    """A claim with one request per ``(request, device)``, allocated on ``node`` (unless not ``allocated``); ``params``
    becomes the claim's opaque config for our driver (all requests)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4())}
    if pod_claim_name:
        meta["annotations"] = {"resource.kubernetes.io/pod-claim-name": pod_claim_name}
    config = []
    if params is not None:
        config = [{"opaque": {"driver": driver, "parameters": params}}]
    obj: dict[str, Any] = {
        "apiVersion": API,
        "kind": "ResourceClaim",
        "metadata": meta,
        "spec": {
            "devices": {
                "requests": [{"name": r, "exactly": {"deviceClassName": driver}} for r, _ in devices],
                "config": config,
            }
        },
        "status": {},
    }
    if allocated:
        obj["status"]["allocation"] = {
            "devices": {
                "results": [{"request": r, "driver": driver, "pool": pool or node, "device": d} for r, d in devices],
                "config": [{"source": "FromClaim", **c} for c in config],
            },
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            },
        }
        obj["status"]["reservedFor"] = [{"resource": "pods", "name": f"pod-{name}", "uid": str(uuid.uuid4())}]
    return obj
