"""The JSONPatch for a pod on vhostplug networks: device requests and the volumes the pod's side needs.

Owns: what is added, and to which container.

- virt-launcher pods (label ``kubevirt.io=virt-launcher``): ``<resource>: n`` requests and limits on ``compute`` and
  the shared links folder (an emptyDir) mounted into ``compute`` and the hook sidecar containers.
- other pods: the device per network on the first container (or the one named by annotation
  ``vhostplug.io/container``) and the downward-API volume at ``/etc/podnetinfo`` (``annotations``, ``labels``).

Ops are built against a working copy of the pod, so later ops see earlier ones; a pod that already has everything
gets no ops (idempotent).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from vhostplug.webhook.config import WebhookConfig

CONTAINER_ANNOTATION = "vhostplug.io/container"
LAUNCHER_LABEL = ("kubevirt.io", "virt-launcher")
COMPUTE = "compute"
SIDECAR_PREFIX = "hook-sidecar-"
LINKS_VOLUME = "vhostplug-links"
PODINFO_VOLUME = "vhostplug-podnetinfo"


def _ptr(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _working_copy(pod: dict[str, Any]) -> dict[str, Any]:
    """A copy of just what a patch may change (containers' resources and volumeMounts, spec.volumes), sharing the
    rest with ``pod``: a 5 MB pod is not copied whole."""
    spec = dict(pod.get("spec") or {})
    containers = []
    for c in spec.get("containers") or []:
        c = dict(c)
        if isinstance(c.get("resources"), dict):
            c["resources"] = {k: dict(v) if isinstance(v, dict) else v for k, v in c["resources"].items()}
        if isinstance(c.get("volumeMounts"), list):
            c["volumeMounts"] = list(c["volumeMounts"])
        containers.append(c)
    spec["containers"] = containers
    if isinstance(spec.get("volumes"), list):
        spec["volumes"] = list(spec["volumes"])
    return {**pod, "spec": spec}


class _Patch:
    """Builds JSONPatch ops against a working copy of the pod, so later ops see earlier ones (no duplicates)."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = _working_copy(pod)
        self.ops: list[dict[str, Any]] = []

    def ensure(self, path: list[str | int], default: Any) -> Any:
        node: Any = self.pod
        for i, key in enumerate(path):
            if isinstance(node, dict):
                if node.get(key) is None:
                    node[key] = json.loads(json.dumps(default)) if i == len(path) - 1 else {}
                    self.ops.append(
                        {"op": "add", "path": _ptr(*path[: i + 1]), "value": json.loads(json.dumps(node[key]))}
                    )
                node = node[key]
            else:
                node = node[key]
        return node

    def set(self, path: list[str | int], value: Any) -> None:
        parent = self.ensure(path[:-1], {})
        if parent.get(path[-1]) == value:
            return
        parent[path[-1]] = value
        self.ops.append({"op": "add", "path": _ptr(*path), "value": value})

    def append(self, path: list[str | int], value: Any) -> None:
        lst = self.ensure(path, [])
        lst.append(value)
        self.ops.append({"op": "add", "path": _ptr(*path) + "/-", "value": value})


def _request_devices(patch: _Patch, index: int, counts: Counter[str]) -> None:
    container = patch.pod["spec"]["containers"][index]
    for resource, n in sorted(counts.items()):
        for kind in ("requests", "limits"):
            have = ((container.get("resources") or {}).get(kind) or {}).get(resource)
            try:
                have_n = int(have) if have is not None else 0
            except (TypeError, ValueError):
                have_n = 0
            if have_n < n:
                patch.set(["spec", "containers", index, "resources", kind, resource], str(n))


def _mount(patch: _Patch, index: int, volume: str, path: str, read_only: bool = False) -> None:
    mounts = patch.pod["spec"]["containers"][index].get("volumeMounts") or []
    if any(m.get("name") == volume or m.get("mountPath") == path for m in mounts):
        return
    mount: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    patch.append(["spec", "containers", index, "volumeMounts"], mount)


def _volume(patch: _Patch, volume: dict[str, Any]) -> None:
    if any(v.get("name") == volume["name"] for v in patch.pod["spec"].get("volumes") or []):
        return
    patch.append(["spec", "volumes"], volume)


def build_patch(
    pod: dict[str, Any], counts: Counter[str], config: WebhookConfig
) -> tuple[list[dict[str, Any]], list[str]]:
    """JSONPatch ops for a pod whose networks need ``counts`` devices per resource; plus warnings."""
    warnings: list[str] = []
    if not counts:
        return [], warnings
    containers = pod["spec"]["containers"]
    names = [c.get("name") for c in containers]
    patch = _Patch(pod)
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get(LAUNCHER_LABEL[0]) == LAUNCHER_LABEL[1]:
        if COMPUTE not in names:
            warnings.append("vhostplug: virt-launcher pod without a 'compute' container; not mutated")
            return [], warnings
        _request_devices(patch, names.index(COMPUTE), counts)
        _volume(patch, {"name": LINKS_VOLUME, "emptyDir": {}})
        for i, name in enumerate(names):
            if name == COMPUTE or str(name).startswith(SIDECAR_PREFIX):
                _mount(patch, i, LINKS_VOLUME, config.links_dir)
        if not any(str(n).startswith(SIDECAR_PREFIX) for n in names):
            warnings.append("vhostplug: no hook sidecar container found; is the vhostuser binding registered?")
        return patch.ops, warnings
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    wanted = annotations.get(CONTAINER_ANNOTATION)
    if wanted is not None and wanted not in names:
        warnings.append(f"vhostplug: container {wanted!r} named by {CONTAINER_ANNOTATION} not found; using the first")
    index = names.index(wanted) if wanted in names else 0
    _request_devices(patch, index, counts)
    _volume(
        patch,
        {
            "name": PODINFO_VOLUME,
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                ]
            },
        },
    )
    for i in range(len(containers)):
        _mount(patch, i, PODINFO_VOLUME, config.podinfo_dir, read_only=True)
    return patch.ops, warnings
