"""Neutron port bindings of ``vif_type`` ``vhostuser`` -> :class:`KuryrBinding`.

Accepted shapes of the port: the Neutron API's (``binding:vif_type``, ``binding:vif_details``), openstacksdk's
(``binding_vif_type``, ``binding_vif_details``) and the bare one (``vif_type``, ``vif_details``); the id as ``id`` or
``port_id``, the MAC as ``mac_address`` (or ``mac``), the MTU as ``mtu`` or ``network.mtu``.
``vif_details``: ``vhostuser_mode`` (QEMU's role), ``vhostuser_socket`` (full path), ``vhostuser_ovs_plug``,
``datapath_type``, ``bridge_name``; ``vhostuser_fp_plug`` / ``vhostuser_vrouter_plug`` ports are not OVS's: refused.
"""

from __future__ import annotations

import os
from typing import Any

from vhostplug.kuryr.binding import (
    DEFAULT_BRIDGE,
    DEFAULT_DATAPATH,
    DEFAULT_MOUNT_POINT,
    DEFAULT_OVS_VHU_PATH,
    KuryrBinding,
    KuryrInputError,
    check_mac,
    check_mode,
    check_mtu,
    check_name,
    check_port_id,
    check_socket_path,
    port_name_for,
)
from vhostplug.model import Mode


def _first(port: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in port and port[key] is not None:
            return port[key]
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def from_neutron_port(
    port: Any,
    mount_point: str = DEFAULT_MOUNT_POINT,
    ovs_vhu_path: str = DEFAULT_OVS_VHU_PATH,
    default_bridge: str = DEFAULT_BRIDGE,
) -> KuryrBinding:
    """Translate one Neutron port (with its binding) into a :class:`KuryrBinding`; raise on anything malformed."""
    if not isinstance(port, dict):
        raise KuryrInputError(f"a Neutron port must be a JSON object, not {type(port).__name__}")
    port_id = check_port_id(_first(port, "id", "port_id"))
    vif_type = _first(port, "binding:vif_type", "binding_vif_type", "vif_type")
    if vif_type != "vhostuser":
        raise KuryrInputError(f"Neutron port {port_id}: vif_type is {vif_type!r}, only 'vhostuser' is supported")
    details = _first(port, "binding:vif_details", "binding_vif_details", "vif_details")
    if not isinstance(details, dict):
        raise KuryrInputError(f"Neutron port {port_id}: vif_details is missing or not an object")
    mode = check_mode(details.get("vhostuser_mode"), f"Neutron port {port_id}: vif_details.vhostuser_mode")
    socket = check_socket_path(details.get("vhostuser_socket"), f"Neutron port {port_id}: vif_details.vhostuser_socket")
    if "vhostuser_ovs_plug" in details and not _flag(details["vhostuser_ovs_plug"]):
        raise KuryrInputError(f"Neutron port {port_id}: vhostuser_ovs_plug is false: the port is not plugged into OVS")
    for other in ("vhostuser_fp_plug", "vhostuser_vrouter_plug"):
        if _flag(details.get(other)):
            raise KuryrInputError(f"Neutron port {port_id}: {other} is set: only OVS vhost-user ports are supported")
    datapath = str(details.get("datapath_type") or DEFAULT_DATAPATH)
    if datapath != DEFAULT_DATAPATH:
        raise KuryrInputError(f"Neutron port {port_id}: datapath_type {datapath!r}: vhost-user needs 'netdev'")
    bridge = check_name(details.get("bridge_name") or default_bridge, f"Neutron port {port_id}: bridge_name")
    network = port.get("network")
    net_mtu = network.get("mtu") if isinstance(network, dict) else None
    port_name = port_name_for(port_id)
    return KuryrBinding(
        port_id=port_id,
        port_name=port_name,
        socket_name=os.path.basename(socket),
        mode=mode,
        mac=check_mac(_first(port, "mac_address", "mac")),
        bridge=bridge,
        datapath_type=datapath,
        iface_id=port_id,
        mtu=check_mtu(_first(port, "mtu") or net_mtu),
        mount_point=mount_point,
        # in client mode Neutron names the socket OVS makes: that folder is OVS's vhost-sock-dir
        ovs_vhu_path=os.path.dirname(socket) + "/" if mode is Mode.CLIENT else ovs_vhu_path,
        source="neutron",
    )
