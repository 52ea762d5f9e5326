"""The registry of device kinds: what the device plugin can serve, one entry per kind, and what each kind is given.

Adding a kind of device means one new module with its config section (a ``vhostplug.configbase.SectionModel`` with
``resource_names()``), its source(s) (``protocols.DeviceSource``), its kind (``protocols.DeviceKind``) and a
``build(node, section)`` function, and one line in :data:`KINDS`. The config gains the section under the entry's key;
the manager only loops over what the builders return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from vhostplug.configbase import SectionModel
from vhostplug.deviceplugin import socketroot, vdpa, vhostuser
from vhostplug.deviceplugin.types import NodeContext
from vhostplug.protocols import DeviceKind

S = TypeVar("S", bound=SectionModel)


@dataclass(frozen=True)
class Kind(Generic[S]):
    """A registered kind: its config section's model and the builder that gets that section."""

    section: type[S]
    build: Callable[[NodeContext, S], DeviceKind]


#: config key -> kind; the key is also the kind's section in the device plugin config
KINDS: dict[str, Kind[Any]] = {
    "vhostuser": Kind(vhostuser.VhostUserConfig, vhostuser.build),
    "dataplane": Kind(socketroot.SocketRootConfig, socketroot.build),
    "vdpa": Kind(vdpa.VdpaConfig, vdpa.build),
}
