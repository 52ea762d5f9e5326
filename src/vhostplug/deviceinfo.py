"""Device-info spec 1.1.0 files (network plumbing WG): build, write, read and remove them.

Two kinds of file: the device plugin's ``<root>/dp/<resource with / as ->-<deviceID>-device.json`` written at
Allocate, and the CNI's file at ``runtimeConfig.CNIDeviceInfoFile``. Both carry container-side paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vhostplug import fsutil
from vhostplug.model import Mode
from vhostplug.validation import DEFAULT_CONTAINER_ROOT, DEFAULT_DEVINFO_DIR

__all__ = ["DEFAULT_CONTAINER_ROOT", "DEFAULT_DEVINFO_DIR"]

SPEC_VERSION = "1.1.0"
#: socket file name inside a device folder: fixed, so the device plugin can name it before the CNI runs
DEVICE_SOCKET_NAME = "vhu.sock"


def container_device_dir(device_id: str, container_root: str = DEFAULT_CONTAINER_ROOT) -> str:
    fsutil.check_component(device_id, "device ID")
    return f"{container_root.rstrip('/')}/{device_id}"


def vhost_user(mode: Mode | str, path: str) -> dict[str, Any]:
    return {"type": "vhost-user", "version": SPEC_VERSION, "vhost-user": {"mode": str(Mode(mode)), "path": path}}


def vdpa(
    parent_device: str,
    driver: str,
    path: str,
    pci_address: str | None = None,
    pf_pci_address: str | None = None,
    representor_device: str | None = None,
) -> dict[str, Any]:
    if driver not in ("vhost", "virtio"):
        raise ValueError(f"vdpa driver must be vhost or virtio, not {driver!r}")
    body: dict[str, Any] = {"parent-device": parent_device, "driver": driver, "path": path}
    for key, value in (
        ("pci-address", pci_address),
        ("pf-pci-address", pf_pci_address),
        ("representor-device", representor_device),
    ):
        if value:
            body[key] = value
    return {"type": "vdpa", "version": SPEC_VERSION, "vdpa": body}


def dp_file_name(resource_name: str, device_id: str) -> str:
    name = f"{resource_name.replace('/', '-')}-{device_id}-device.json"
    fsutil.check_component(name, "device-info file name")
    return name


def dp_dir(devinfo_root: Path) -> Path:
    return Path(devinfo_root) / "dp"


def write_dp(devinfo_root: Path, resource_name: str, device_id: str, info: dict[str, Any]) -> Path:
    """Write the device plugin's file (folder made as needed); returns its path."""
    folder = dp_dir(devinfo_root)
    folder.mkdir(parents=True, exist_ok=True)
    return fsutil.write_json_in(folder, dp_file_name(resource_name, device_id), info)


def remove_dp(devinfo_root: Path, resource_name: str, device_id: str) -> bool:
    return fsutil.unlink_in(dp_dir(devinfo_root), dp_file_name(resource_name, device_id))


def write_at(path: Path, info: dict[str, Any]) -> Path:
    """Write a device-info file at an exact path (the CNI's ``CNIDeviceInfoFile``), making its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return fsutil.write_json_in(path.parent, path.name, info)


def read(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError(f"{path} is not a device-info file (no 'type')")
    return data
