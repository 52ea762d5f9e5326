"""Node policy: what a network config may choose on this node. The node admin sets it in the agent's config; a netconf
(tenant input: whoever may write a NetworkAttachmentDefinition) only selects within it.

Every refusal is a CNI error 7 naming the key, the value and what this node allows, raised before ADD makes anything.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from vhostplug import deviceinfo, ovsvhost
from vhostplug.cni.spec import INVALID_CONFIG, UNSAFE_PATH, CniError
from vhostplug.validation import DEFAULT_SOCKET_ROOT

DEFAULT_BRIDGE = "br-vhost"
DEFAULT_IPAM_PLUGINS = ("host-local", "static")
DEFAULT_KURYR_MOUNT_POINTS = ("/var/cni/vhostuser",)
DEFAULT_DEVICE_RESOURCE = "vhostplug.io/vhostuser"
#: a bridge name: ASCII letters, digits, '_', '.', '-', at most 15 bytes (IFNAMSIZ - 1), not '.' or '..'
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def check_bridge_name(name: str) -> str:
    if not BRIDGE_RE.match(name) or name in (".", ".."):
        raise ValueError(f"bridge {name!r} is not a bridge name: ASCII letters, digits, '_', '.', '-', 1-15 bytes")
    return name


def refuse(key: str, value: object, allowed: str) -> CniError:
    return CniError(INVALID_CONFIG, f"{key} {value!r} is not allowed on this node", f"this node allows: {allowed}")


@dataclass(frozen=True)
class NodePolicy:
    """What this node allows. The first socket root, container socket root and bridge are the defaults."""

    socket_roots: tuple[Path, ...] = (DEFAULT_SOCKET_ROOT,)
    container_socket_roots: tuple[str, ...] = (deviceinfo.DEFAULT_CONTAINER_ROOT,)
    devinfo_root: Path = deviceinfo.DEFAULT_DEVINFO_DIR
    bridges: tuple[str, ...] = (DEFAULT_BRIDGE,)
    may_create_bridges: bool = True
    datapath_type: str = ovsvhost.DATAPATH_NETDEV
    ipam_plugins: tuple[str, ...] = DEFAULT_IPAM_PLUGINS
    kuryr_mount_points: tuple[str, ...] = DEFAULT_KURYR_MOUNT_POINTS
    #: the device plugin resource whose devices a netconf may name by deviceID
    device_resource: str = DEFAULT_DEVICE_RESOURCE
    extra: dict[str, str] = field(default_factory=dict)

    def socket_root(self, asked: str | None) -> Path:
        if asked is None:
            return self.socket_roots[0]
        if Path(asked) not in self.socket_roots:
            raise refuse("socketRoot", asked, ", ".join(map(str, self.socket_roots)))
        return Path(asked)

    def container_socket_root(self, asked: str | None) -> str:
        if asked is None:
            return self.container_socket_roots[0]
        if asked.rstrip("/") not in [r.rstrip("/") for r in self.container_socket_roots]:
            raise refuse("containerSocketRoot", asked, ", ".join(self.container_socket_roots))
        return asked

    def bridge(self, asked: str | None, key: str = "bridge") -> str:
        if asked is None:
            return self.bridges[0]
        if asked not in self.bridges:
            raise refuse(key, asked, ", ".join(self.bridges))
        return asked

    def ipam_plugin(self, asked: object) -> str:
        if not isinstance(asked, str) or asked not in self.ipam_plugins:
            raise refuse("ipam.type", asked, ", ".join(self.ipam_plugins) or "no IPAM plugin")
        return asked

    def kuryr_mount_point(self, asked: str) -> str:
        if asked.rstrip("/") not in [m.rstrip("/") for m in self.kuryr_mount_points]:
            raise refuse("kuryr mountPoint", asked, ", ".join(self.kuryr_mount_points) or "no kuryr mount point")
        return asked

    def devinfo_file(self, asked: str) -> str:
        """``runtimeConfig.CNIDeviceInfoFile`` must name a file inside the devinfo root, through no symlink."""
        root = Path(os.path.realpath(self.devinfo_root))
        path = Path(os.path.normpath(asked))
        try:
            path.relative_to(self.devinfo_root)
        except ValueError:
            raise refuse("runtimeConfig.CNIDeviceInfoFile", asked, f"files under {self.devinfo_root}") from None
        parent = Path(os.path.realpath(path.parent))
        try:
            parent.relative_to(root)
        except ValueError:
            raise refuse(
                "runtimeConfig.CNIDeviceInfoFile",
                asked,
                f"files under {self.devinfo_root} (its folder leads elsewhere)",
            ) from None
        return str(path)

    def device(self, device_id: str, socket_root: Path, recorded: bool = False) -> Path:
        """``deviceID`` must be a device our device plugin allocated: its dp device-info file (written at Allocate
        under the devinfo root) and its folder (a real folder under the socket root) both exist. ``recorded``: the
        attachment's own record names this folder (checked at its first ADD), so only the folder must exist."""
        marker = deviceinfo.dp_dir(self.devinfo_root) / deviceinfo.dp_file_name(self.device_resource, device_id)
        folder = socket_root / device_id
        if os.path.islink(folder):
            raise CniError(UNSAFE_PATH, f"refusing the socket folder: {folder} is a symlink; refusing to follow it")
        try:
            marker_ok = recorded or stat.S_ISREG(os.lstat(marker).st_mode)
            folder_ok = stat.S_ISDIR(os.lstat(folder).st_mode)
        except FileNotFoundError:
            marker_ok = folder_ok = False
        if not (marker_ok and folder_ok):
            raise refuse(
                "deviceID", device_id, f"devices of {self.device_resource} allocated by this node's device plugin"
            )
        return folder
