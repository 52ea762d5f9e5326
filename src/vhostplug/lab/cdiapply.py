"""The container runtime's side of CDI (Container Device Interface, spec ≥ 0.6) for lab pods: find a fully
qualified device (``vendor.io/class=name``) in the spec files of a CDI folder, and apply its container edits (the
spec's own and the device's) inside a lab pod's mount namespace as containerd or podman would: bind mounts, device
nodes, environment (returned: a lab pod has no container process to give it to).

Only what CDI's container edits say is applied, nothing is inferred; an unknown device ID or a spec that does not
parse is a :class:`CdiError` naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vhostplug.lab.kubelet import bind_into_pod, device_into_pod


class CdiError(RuntimeError):
    pass


@dataclass
class Applied:
    """What the edits of some devices did in one pod."""

    mounts: list[tuple[str, str]] = field(default_factory=list)
    device_nodes: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise CdiError(f"CDI spec {path} does not parse: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str) or not isinstance(spec.get("devices"), list):
        raise CdiError(f"CDI spec {path} has no kind and devices")
    return spec


def find(cdi_dirs: Iterable[Path], device_id: str) -> list[dict[str, Any]]:
    """The container edits for ``device_id``: the spec's own (if any), then the device's."""
    kind, sep, name = device_id.partition("=")
    if not sep or "/" not in kind or not name:
        raise CdiError(f"{device_id!r} is not a fully qualified CDI device name (vendor.io/class=name)")
    for folder in cdi_dirs:
        for path in sorted(Path(folder).glob("*")):
            if path.suffix not in (".json", ".yaml", ".yml"):
                continue
            spec = _load(path)
            if spec["kind"] != kind:
                continue
            for dev in spec["devices"]:
                if isinstance(dev, dict) and dev.get("name") == name:
                    return [e for e in (spec.get("containerEdits"), dev.get("containerEdits")) if e]
    raise CdiError(f"no CDI device {device_id} in {', '.join(map(str, cdi_dirs))}")


def apply(cdi_dirs: Iterable[Path], device_ids: Iterable[str], pid: int) -> Applied:
    """Apply the edits of every device in ``device_ids`` inside the mount namespace of ``pid`` (a lab pod)."""
    dirs = list(cdi_dirs)
    done = Applied()
    for device_id in device_ids:
        for edits in find(dirs, device_id):
            for m in edits.get("mounts") or []:
                options = m.get("options") or []
                bind_into_pod(pid, m["hostPath"], m["containerPath"], read_only="ro" in options)
                done.mounts.append((m["hostPath"], m["containerPath"]))
            for d in edits.get("deviceNodes") or []:
                host = d.get("hostPath") or d["path"]
                if not os.path.exists(host):
                    raise CdiError(f"CDI device {device_id}: device node {host} does not exist on this node")
                device_into_pod(pid, host, d["path"])
                done.device_nodes.append(d["path"])
            done.env += [e for e in edits.get("env") or [] if isinstance(e, str)]
    return done
