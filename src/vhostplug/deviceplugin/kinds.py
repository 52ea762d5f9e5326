"""The registry of device kinds: what the device plugin can serve, one entry per kind, and what each kind is given.

Adding a kind of device means one new module with its source(s) (``protocols.DeviceSource``), its kind
(``protocols.DeviceKind``) and a ``build(node)`` function, a section in the config model naming its resources
(``resource_names()``), and one line in :data:`KINDS`. The manager only loops over what the builders return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vhostplug.deviceplugin import socketroot, vdpa, vhostuser
from vhostplug.deviceplugin.config import DevicePluginConfig
from vhostplug.protocols import DeviceKind


@dataclass(frozen=True)
class NodeContext:
    """What every kind may need of the node: the config and the agent's folders and dataplane probe."""

    config: DevicePluginConfig
    socket_root: Path
    devinfo_dir: Path
    container_root: str
    health_probe: Callable[[], tuple[bool, str]]


#: kind name -> builder; each builder returns the kind with the sources its config section asks for
KINDS: dict[str, Callable[[NodeContext], DeviceKind]] = {
    "vhostuser": vhostuser.build,
    "dataplane": socketroot.build,
    "vdpa": vdpa.build,
}
