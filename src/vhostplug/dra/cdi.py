"""CDI specs of prepared claims: one file per claim and device kind in the node's CDI folder, one CDI device per
request, whose container edits give the container its socket folder (vhost-user) or vhost-vdpa character device
(vDPA) and the KEP-5304 metadata file. Written atomically (a reader never sees half a spec), 0644, owned by root."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhostplug import fsutil


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False

    def to_json(self) -> dict[str, Any]:
        opts = ["ro", "bind"] if self.read_only else ["rw", "rbind"]
        return {"hostPath": self.host_path, "containerPath": self.container_path, "options": opts}


@dataclass(frozen=True)
class DeviceNode:
    path: str
    host_path: str
    permissions: str = "rw"

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "hostPath": self.host_path, "permissions": self.permissions}


@dataclass(frozen=True)
class CdiDevice:
    name: str
    mounts: tuple[Mount, ...] = ()
    device_nodes: tuple[DeviceNode, ...] = ()
    env: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        edits: dict[str, Any] = {}
        if self.env:
            edits["env"] = list(self.env)
        if self.device_nodes:
            edits["deviceNodes"] = [d.to_json() for d in self.device_nodes]
        if self.mounts:
            edits["mounts"] = [m.to_json() for m in self.mounts]
        return {"name": self.name, "containerEdits": edits}


def spec(version: str, kind: str, devices: list[CdiDevice]) -> dict[str, Any]:
    return {"cdiVersion": version, "kind": kind, "devices": [d.to_json() for d in devices]}


def write(path: Path, content: dict[str, Any]) -> None:
    """Write the spec at ``path`` (the CDI folder is made 0755 when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fsutil.write_file_in(path.parent, path.name, json.dumps(content, indent=2).encode() + b"\n", mode=0o644)


def remove(path: Path) -> bool:
    return fsutil.unlink_in(path.parent, path.name)
