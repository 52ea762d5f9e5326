"""The one value every kuryr / Neutron / os-vif input is translated into: :class:`KuryrBinding`, plus its checks.

A binding says which OVS port to make (``'vhu' + port_id`` cut to 14 characters, on ``bridge``), of which type (from
``mode``, QEMU's / the app's role: ``server`` -> ``dpdkvhostuserclient``, ``client`` -> ``dpdkvhostuser``), where the pod
sees the socket (``mount_point/socket_name``), where OVS makes it in client mode (``ovs_vhu_path/port_name``), and the
kuryr-style config file the app reads (``<container_id>-<ifname>`` = ``{"vhostname", "vhostmac", "mode"}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhostplug import ovsvhost
from vhostplug.model import MAX_SOCKET_PATH, Attachment, Mode
from vhostplug.ovsvhost import DATAPATH_NETDEV

#: kuryr-kubernetes' defaults ([vhostuser] mount_point, ovs_vhu_path; [neutron_defaults] ovs_bridge)
DEFAULT_MOUNT_POINT = "/var/cni/vhostuser"
DEFAULT_OVS_VHU_PATH = "/var/run/openvswitch/"
DEFAULT_BRIDGE = "br-int"
DEFAULT_DATAPATH = DATAPATH_NETDEV
PORT_PREFIX = "vhu"
#: os-vif / Nova NIC_NAME_LEN: port and socket names are cut to this
NIC_NAME_LEN = 14

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.:@-]*$")


class KuryrInputError(ValueError):
    """A kuryr / Neutron / os-vif input is malformed or describes something vhostplug cannot plug."""


def port_name_for(port_id: str) -> str:
    """OVS port (and socket) name of a Neutron port: ``'vhu' + port_id`` cut to 14 characters."""
    return (PORT_PREFIX + check_port_id(port_id))[:NIC_NAME_LEN]


def check_port_id(port_id: Any) -> str:
    if not isinstance(port_id, str) or not port_id:
        raise KuryrInputError("the port has no id")
    if not _ID_RE.match(port_id) or len(port_id) > 255:
        raise KuryrInputError(f"port id {port_id!r} is not a plain identifier (no '/', spaces or control characters)")
    return port_id


def check_mode(value: Any, what: str) -> Mode:
    try:
        return Mode(str(value).lower())
    except ValueError:
        raise KuryrInputError(f"{what} must be 'server' or 'client', not {value!r}") from None


def check_mac(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise KuryrInputError(f"MAC address {value!r} is not of the form aa:bb:cc:dd:ee:ff")
    return value.lower()


def check_mtu(value: Any) -> int | None:
    if value in (None, "", 0):
        return None
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        raise KuryrInputError(f"MTU {value!r} is not a number") from None
    if not 68 <= mtu <= 65535:
        raise KuryrInputError(f"MTU {mtu} is out of range (68..65535)")
    return mtu


def check_socket_path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise KuryrInputError(f"{what} is missing")
    if not value.startswith("/") or "\0" in value or value.endswith("/"):
        raise KuryrInputError(f"{what} {value!r} must be an absolute path to a socket file")
    if ".." in value.split("/"):
        raise KuryrInputError(f"{what} {value!r} must not contain '..'")
    if len(value.encode()) > MAX_SOCKET_PATH:
        raise KuryrInputError(f"{what} {value!r} is longer than {MAX_SOCKET_PATH} bytes (unix socket limit)")
    return value


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > 255:
        raise KuryrInputError(f"{what} {value!r} is not a plain name")
    return value


@dataclass(frozen=True)
class KuryrBinding:
    """A vhost-user port described by Neutron (port binding) or os-vif (``VIFVHostUser``), ready to plug."""

    port_id: str
    port_name: str
    socket_name: str
    mode: Mode
    mac: str = ""
    bridge: str = DEFAULT_BRIDGE
    datapath_type: str = DEFAULT_DATAPATH
    iface_id: str = ""
    mtu: int | None = None
    mount_point: str = DEFAULT_MOUNT_POINT
    ovs_vhu_path: str = DEFAULT_OVS_VHU_PATH
    source: str = ""  # "neutron" or "os-vif"

    @property
    def ovs_type(self) -> str:
        return self.mode.ovs_type

    @property
    def socket_path(self) -> str:
        """Where the pod (and the app) sees the socket: ``mount_point/socket_name``."""
        return str(Path(self.mount_point) / self.socket_name)

    def config_file_name(self, container_id: str, ifname: str) -> str:
        return config_file_name(container_id, ifname)

    def external_ids(self) -> dict[str, str]:
        """What Neutron's agents expect on the OVS Interface (``iface-id``, ``attached-mac``...)."""
        ids = {ovsvhost.ID_IFACE: self.iface_id or self.port_id, ovsvhost.ID_IFACE_STATUS: "active"}
        if self.mac:
            ids[ovsvhost.ID_ATTACHED_MAC] = self.mac
        return ids

    def to_attachment(self, container_id: str, ifname: str, device_id: str | None = None) -> Attachment:
        """The :class:`~vhostplug.model.Attachment` the dataplane realises for this binding."""
        return Attachment(
            container_id=container_id,
            ifname=ifname,
            port_name=self.port_name,
            socket_dir=Path(self.mount_point),
            socket_name=self.socket_name,
            mode=self.mode,
            bridge=self.bridge,
            mac=self.mac,
            mtu=self.mtu,
            device_id=device_id,
            iface_id=self.iface_id or self.port_id,
            extra_ids=((ovsvhost.ID_KURYR_PORT, self.port_id),),
        )


def config_file_name(container_id: str, ifname: str) -> str:
    """kuryr's app config file name: ``<container_id>-<ifname>``."""
    check_name(container_id, "container ID")
    check_name(ifname, "interface name")
    return f"{container_id}-{ifname}"
