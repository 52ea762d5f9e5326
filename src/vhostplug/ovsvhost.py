"""The OVS vhost-user vocabulary, in one place: interface types, the options and other_config keys OVS reads, the
external_ids vhostplug writes and reads back, where a port's socket is, and when OVS calls a port connected.

The backend (:mod:`vhostplug.dataplane.ovs`), the audit (:mod:`vhostplug.audit.ovs`), the lab and the kuryr mapping
all speak through these names; adding an OVS port type means editing this module (and :class:`vhostplug.model.Mode`).
The vDPA representor ports' keys are here too (:mod:`vhostplug.vdpa.attach` writes them). Plain strings and pure
functions only: no OVSDB access here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: OVS is the vhost-user client; the app / QEMU serves the socket (Mode.SERVER)
TYPE_OVS_CLIENT = "dpdkvhostuserclient"
#: OVS is the vhost-user server and makes the socket in its vhost-sock-dir (Mode.CLIENT; deprecated by OVS)
TYPE_OVS_SERVER = "dpdkvhostuser"
VHOST_TYPES = (TYPE_OVS_SERVER, TYPE_OVS_CLIENT)

#: Interface options: where a dpdkvhostuserclient port connects
OPTION_SERVER_PATH = "vhost-server-path"
#: Open_vSwitch other_config: the folder (relative to OVS_RUNDIR) where dpdkvhostuser sockets are made
OTHER_CONFIG_SOCK_DIR = "vhost-sock-dir"
#: Bridge datapath type vhost-user ports need
DATAPATH_NETDEV = "netdev"
#: a kernel netdev on the bridge (a vDPA representor)
TYPE_SYSTEM = "system"
#: a bridge's local port
TYPE_INTERNAL = "internal"
#: a port DPDK opens itself (the lab's uplinks: an af_packet vdev), and the option that names it
TYPE_DPDK = "dpdk"
OPTION_DPDK_DEVARGS = "dpdk-devargs"

# -- external_ids written on the Interface at attach and read back by DEL, GC, CHECK, the relocator and the audit ----
#: marks an interface as vhostplug's; value: the attachment key ``<container id>/<ifname>``
ID_ATTACHMENT = "vhostplug-attachment"
ID_CONTAINER = "vhostplug-container-id"
ID_IFNAME = "vhostplug-ifname"
ID_MODE = "vhostplug-mode"
#: host path of the socket where the app / QEMU finds it (for dpdkvhostuser: where the agent moves OVS's socket to)
ID_SOCKET = "vhostplug-socket"
ID_DEVICE = "vhostplug-device-id"
ID_NETWORK = "vhostplug-network"
ID_FOLDER = "vhostplug-folder"
ID_FOLDER_OWNED = "vhostplug-folder-owned"
ID_DEVINFO = "vhostplug-devinfo"
ID_CONFIG_FILE = "vhostplug-config-file"
#: the pod of the attachment, from CNI_ARGS K8S_POD_NAMESPACE / K8S_POD_NAME at ADD (the metrics' labels)
ID_POD_NAMESPACE = "vhostplug-pod-namespace"
ID_POD_NAME = "vhostplug-pod-name"
#: a port made by the DRA driver's Prepare: the claim's UID and the request it serves (see vhostplug.dra)
ID_DRA_CLAIM = "vhostplug-dra-claim"
ID_DRA_REQUEST = "vhostplug-dra-request"
#: Neutron's keys (kuryr / os-vif attachments and Neutron agents read them)
ID_IFACE = "iface-id"
ID_IFACE_STATUS = "iface-status"
IFACE_STATUS_ACTIVE = "active"
ID_ATTACHED_MAC = "attached-mac"
ID_VM_UUID = "vm-uuid"
ID_KURYR_PORT = "kuryr-port-id"
# -- external_ids of a vDPA representor port: ID_ATTACHMENT, ID_CONTAINER, ID_IFNAME, ID_NETWORK, ID_DEVINFO, the
#    Neutron keys, and what DEL needs to give the pod's netdev and the representor back from OVSDB alone ------------
#: marks an interface as a vDPA attachment's representor; value: the vDPA device name
ID_VDPA_DEVICE = "vhostplug-vdpa-device"
#: ``vhost`` or ``virtio``
ID_VDPA_DRIVER = "vhostplug-vdpa-driver"
#: the pod's network namespace path
ID_NETNS = "vhostplug-netns"
#: a virtio device's netdev as it was in the host: name, ifindex, MAC, MTU, up (``true``/``false``)
ID_VDPA_NETDEV = "vhostplug-vdpa-netdev"
ID_VDPA_IFINDEX = "vhostplug-vdpa-ifindex"
ID_VDPA_MAC = "vhostplug-vdpa-mac"
ID_VDPA_MTU = "vhostplug-vdpa-mtu"
ID_VDPA_UP = "vhostplug-vdpa-up"
#: the representor's own MTU and state before ADD
ID_REP_MTU = "vhostplug-rep-mtu"
ID_REP_UP = "vhostplug-rep-up"

#: Bridge external_ids: the bridge was made by vhostplug (only those may ever be deleted by it)
BRIDGE_MARK = "vhostplug-created"

#: Interface status keys that carry the vhost-user connection state, newest OVS first (3.x: ``status``)
_STATUS_KEYS = ("status", "vhost-user-status", "vhost_user_status")


def attachment_port(ovs_type: str, external_ids: Mapping[str, str]) -> bool:
    """Whether an Interface can be an attachment's port: a vhost-user port, or a ``system`` port that carries a vDPA
    device's key (a representor; other system ports, a NIC's uplink say, never are)."""
    return ovs_type in VHOST_TYPES or (ovs_type == TYPE_SYSTEM and ID_VDPA_DEVICE in external_ids)


def vhost_sock_dir(rundir: str | os.PathLike[str], configured: str | None) -> str:
    """ovs-vswitchd's vhost-sock-dir: ``<rundir>/<other_config:vhost-sock-dir>`` (the rundir itself when unset)."""
    if not configured:
        return os.path.normpath(rundir)
    return os.path.normpath(f"{os.fspath(rundir)}/{configured}")


def socket_path(ovs_type: str, name: str, options: Mapping[str, str], sock_dir: str) -> str:
    """Where the port's socket is on the host: the server path it connects to, or the one OVS makes."""
    if ovs_type == TYPE_OVS_CLIENT:
        return options.get(OPTION_SERVER_PATH, "")
    return os.path.join(sock_dir, name)


def connected(status: Mapping[str, str], link_state: str | None) -> bool | None:
    """Whether OVS reports the vhost-user peer connected; None when it says nothing (no status, no link state)."""
    for key in _STATUS_KEYS:
        if key in status:
            return status[key] == "connected"
    return None if link_state is None else link_state == "up"
