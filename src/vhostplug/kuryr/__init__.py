"""Kuryr / os-vif compatibility: Neutron vhostuser port bindings and os-vif VIFVHostUser objects -> attachments.

Pure translation (no I/O): :func:`from_cni` finds the input in a CNI ADD, :func:`from_neutron_port` and
:func:`from_vif` translate one object, and :class:`KuryrBinding` says what to plug and which app config to write.
"""

from vhostplug.kuryr.binding import (
    DEFAULT_BRIDGE,
    DEFAULT_MOUNT_POINT,
    DEFAULT_OVS_VHU_PATH,
    KuryrBinding,
    KuryrInputError,
    config_file_name,
    port_name_for,
)
from vhostplug.kuryr.cni import CNI_ARG_NEUTRON_PORT, CNI_ARG_VIF, from_cni
from vhostplug.kuryr.neutron import from_neutron_port
from vhostplug.kuryr.osvif import from_vif, pick_vhostuser, vifs_by_ifname

__all__ = [
    "CNI_ARG_NEUTRON_PORT",
    "CNI_ARG_VIF",
    "DEFAULT_BRIDGE",
    "DEFAULT_MOUNT_POINT",
    "DEFAULT_OVS_VHU_PATH",
    "KuryrBinding",
    "KuryrInputError",
    "config_file_name",
    "from_cni",
    "from_neutron_port",
    "from_vif",
    "pick_vhostuser",
    "port_name_for",
    "vifs_by_ifname",
]
