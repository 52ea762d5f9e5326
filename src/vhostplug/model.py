"""Frozen value types shared by every part of vhostplug: modes, attachments, ports, limits, and the stable names
(port name, MAC) derived from an attachment's key."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from vhostplug import ovsvhost

#: sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
#: external_ids key that marks an OVS interface as made by vhostplug (value: the attachment key).
EXTERNAL_ID_ATTACHMENT = ovsvhost.ID_ATTACHMENT


class Mode(enum.StrEnum):
    """The role of the app / QEMU on the vhost-user socket (as in Neutron, os-vif and device-info).

    ``server``: the app creates the socket, OVS connects (OVS port type ``dpdkvhostuserclient``).
    ``client``: OVS creates the socket, the app connects (OVS port type ``dpdkvhostuser``, deprecated).
    """

    SERVER = "server"
    CLIENT = "client"

    @property
    def ovs_type(self) -> str:
        return ovsvhost.TYPE_OVS_CLIENT if self is Mode.SERVER else ovsvhost.TYPE_OVS_SERVER

    @classmethod
    def from_ovs_type(cls, ovs_type: str) -> Mode:
        if ovs_type == ovsvhost.TYPE_OVS_CLIENT:
            return cls.SERVER
        if ovs_type == ovsvhost.TYPE_OVS_SERVER:
            return cls.CLIENT
        raise ValueError(f"not a vhost-user OVS interface type: {ovs_type!r}")


def attachment_key(container_id: str, ifname: str) -> str:
    """The key that names one attachment everywhere (OVSDB external_ids, GC keep lists)."""
    return f"{container_id}/{ifname}"


def port_name_for(container_id: str, ifname: str) -> str:
    """A stable 14-character OVS port name (``vhu`` + 11 hex), as Neutron names vhost-user ports."""
    return "vhu" + hashlib.sha256(attachment_key(container_id, ifname).encode()).hexdigest()[:11]


def mac_for(container_id: str, ifname: str) -> str:
    """A stable, locally administered unicast MAC."""
    digest = hashlib.sha256(("mac/" + attachment_key(container_id, ifname)).encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


@dataclass(frozen=True)
class Attachment:
    """One vhost-user interface of one container, as the dataplane must realise it."""

    container_id: str
    ifname: str
    port_name: str
    socket_dir: Path
    socket_name: str
    mode: Mode = Mode.SERVER
    bridge: str = "br-vhost"
    mac: str = ""
    mtu: int | None = None
    vlan: int | None = None
    device_id: str | None = None
    iface_id: str = ""
    vm_uuid: str = ""
    extra_ids: tuple[tuple[str, str], ...] = field(default=())
    #: node policy: whether the switch may make ``bridge`` when it is missing, and of which datapath type
    may_create_bridge: bool = True
    datapath_type: str = ovsvhost.DATAPATH_NETDEV
    #: OVS ingress policing of the interface (kbit/s, kbit); None: none
    ingress_policing_rate: int | None = None
    ingress_policing_burst: int | None = None

    @property
    def key(self) -> str:
        return attachment_key(self.container_id, self.ifname)

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / self.socket_name

    def external_ids(self) -> dict[str, str]:
        """Everything needed to rebuild this attachment from OVSDB alone (the agent keeps no database)."""
        ids = {
            ovsvhost.ID_ATTACHMENT: self.key,
            ovsvhost.ID_CONTAINER: self.container_id,
            ovsvhost.ID_IFNAME: self.ifname,
            ovsvhost.ID_MODE: self.mode.value,
            ovsvhost.ID_SOCKET: str(self.socket_path),
            ovsvhost.ID_IFACE: self.iface_id or self.key,
            ovsvhost.ID_IFACE_STATUS: ovsvhost.IFACE_STATUS_ACTIVE,
        }
        if self.device_id:
            ids[ovsvhost.ID_DEVICE] = self.device_id
        if self.mac:
            ids[ovsvhost.ID_ATTACHED_MAC] = self.mac
        if self.vm_uuid:
            ids[ovsvhost.ID_VM_UUID] = self.vm_uuid
        ids.update(dict(self.extra_ids))
        return ids


@dataclass(frozen=True)
class NetdevPort:
    """An existing kernel netdev (a vDPA representor) to put on a bridge as a ``system`` port."""

    name: str
    bridge: str
    external_ids: tuple[tuple[str, str], ...] = ()
    mtu: int | None = None
    vlan: int | None = None


@dataclass(frozen=True)
class VhostUserPort:
    """A vhost-user interface as the dataplane reports it."""

    name: str
    bridge: str
    ovs_type: str
    socket_path: str
    ofport: int | None
    external_ids: dict[str, str]
    status: dict[str, str]
    mtu: int | None = None
    vlan: int | None = None
    link_state: str | None = None
    ingress_policing_rate: int | None = None
    ingress_policing_burst: int | None = None

    @property
    def mode(self) -> Mode:
        return Mode.from_ovs_type(self.ovs_type)

    @property
    def attachment_key(self) -> str | None:
        return self.external_ids.get(ovsvhost.ID_ATTACHMENT)

    @property
    def connected(self) -> bool:
        return ovsvhost.connected(self.status, self.link_state) is True


@dataclass(frozen=True)
class DataplaneHealth:
    """Whether the dataplane can take attachments now, and why not."""

    reachable: bool
    dpdk_initialized: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reachable and self.dpdk_initialized


@dataclass(frozen=True)
class DraDevice:
    """A device of the DRA driver on this node as its ResourceSlice publishes it (see vhostplug.dra.catalog)."""

    pool: str
    name: str
    #: ``vhostuser`` or ``vdpa``
    kind: str
    #: the OVS bridge a vhost-user port goes on
    bridge: str | None
    #: the vDPA device's name (``vdpa0``), for vDPA devices
    vdpa_device: str | None = None
    attributes: tuple[tuple[str, object], ...] = ()
