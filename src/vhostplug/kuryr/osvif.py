"""os-vif ``VIFVHostUser`` objects in oslo.versionedobjects primitive form, and kuryr's wrappers of them.

A primitive is ``{"versioned_object.name", "versioned_object.namespace": "os_vif", "versioned_object.version",
"versioned_object.data": {...}}``. ``VIFVHostUser`` data: ``id``, ``address``, ``vif_name``, ``path`` (the socket),
``mode`` (QEMU's role), ``network`` (a ``Network`` primitive: ``bridge``, ``mtu``), ``port_profile`` (a
``VIFPortProfileOpenVSwitch`` primitive: ``interface_id``, ``datapath_type``), ``plugin`` (``ovs``).

kuryr stores VIFs in the pod annotation ``openstack.org/kuryr-vif`` as a ``PodState`` primitive
(``default_vif`` for ``eth0``, ``additional_vifs`` by ifname) or, in older releases, a JSON object of VIF primitives by
ifname; newer releases keep ``{ifname: {"default": bool, "vif": <primitive>}}`` in the KuryrPort's ``status.vifs``.
:func:`vifs_by_ifname` accepts all three (and their JSON text).
"""

from __future__ import annotations

import json
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

NAME = "versioned_object.name"
NAMESPACE = "versioned_object.namespace"
VERSION = "versioned_object.version"
DATA = "versioned_object.data"
DEFAULT_IFNAME = "eth0"
VHOSTUSER_PLUGINS = ("ovs",)


def is_primitive(obj: Any) -> bool:
    return isinstance(obj, dict) and NAME in obj and DATA in obj


def _data(obj: Any, expect: tuple[str, ...], what: str) -> dict[str, Any]:
    if not is_primitive(obj):
        raise KuryrInputError(f"{what} is not an oslo.versionedobjects primitive (no {NAME}/{DATA})")
    name = obj[NAME]
    if expect and name not in expect:
        raise KuryrInputError(f"{what} is a {name!r}, expected {' or '.join(expect)}")
    namespace = obj.get(NAMESPACE, "os_vif")
    if namespace != "os_vif":
        raise KuryrInputError(f"{what}: namespace {namespace!r} is not 'os_vif'")
    version = str(obj.get(VERSION, "1.0"))
    if version.split(".")[0] != "1":
        raise KuryrInputError(f"{what}: version {version} of {name} is not supported (1.x only)")
    data = obj[DATA]
    if not isinstance(data, dict):
        raise KuryrInputError(f"{what}: {DATA} is not an object")
    return data


def from_vif(
    vif: Any,
    mount_point: str | None = None,
    ovs_vhu_path: str = DEFAULT_OVS_VHU_PATH,
    default_bridge: str = DEFAULT_BRIDGE,
) -> KuryrBinding:
    """Translate a ``VIFVHostUser`` primitive. ``mount_point`` defaults to the folder of the VIF's ``path``."""
    data = _data(vif, ("VIFVHostUser",), "the os-vif VIF")
    port_id = check_port_id(data.get("id"))
    what = f"os-vif VIF {port_id}"
    mode = check_mode(data.get("mode"), f"{what}: mode")
    path = check_socket_path(data.get("path"), f"{what}: path (the vhost-user socket)")
    plugin = data.get("plugin", "ovs")
    if plugin not in VHOSTUSER_PLUGINS:
        raise KuryrInputError(f"{what}: plugin {plugin!r} is not supported (only {', '.join(VHOSTUSER_PLUGINS)})")

    bridge = default_bridge
    mtu = None
    network = data.get("network")
    if network is not None:
        net = _data(network, ("Network",), f"{what}: network")
        bridge = net.get("bridge") or default_bridge
        mtu = check_mtu(net.get("mtu"))
    bridge = check_name(data.get("bridge_name") or bridge, f"{what}: bridge")

    iface_id = port_id
    datapath = DEFAULT_DATAPATH
    profile = data.get("port_profile")
    if profile is not None:
        prof = _data(profile, ("VIFPortProfileOpenVSwitch", "VIFPortProfileBase"), f"{what}: port_profile")
        iface_id = check_port_id(prof.get("interface_id") or port_id)
        datapath = str(prof.get("datapath_type") or DEFAULT_DATAPATH)
        if datapath != DEFAULT_DATAPATH:
            raise KuryrInputError(f"{what}: datapath_type {datapath!r}: vhost-user needs 'netdev'")

    return KuryrBinding(
        port_id=port_id,
        port_name=port_name_for(port_id),
        socket_name=os.path.basename(path),
        mode=mode,
        mac=check_mac(data.get("address")),
        bridge=bridge,
        datapath_type=datapath,
        iface_id=iface_id,
        mtu=mtu,
        mount_point=mount_point or os.path.dirname(path) or DEFAULT_MOUNT_POINT,
        ovs_vhu_path=ovs_vhu_path,
        source="os-vif",
    )


def vifs_by_ifname(value: Any) -> dict[str, Any]:
    """Every VIF primitive in a kuryr carrier (PodState, ``{ifname: VIF}``, KuryrPort vifs, or one bare VIF)."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise KuryrInputError(f"the kuryr VIF annotation is not valid JSON: {exc}") from None
    if is_primitive(value):
        if value[NAME] == "PodState":
            data = _data(value, ("PodState",), "the kuryr PodState")
            out: dict[str, Any] = {}
            if data.get("default_vif") is not None:
                out[DEFAULT_IFNAME] = data["default_vif"]
            extra = data.get("additional_vifs") or {}
            if not isinstance(extra, dict):
                raise KuryrInputError("the kuryr PodState: additional_vifs is not an object")
            out.update(extra)
            return out
        return {DEFAULT_IFNAME: value}
    if not isinstance(value, dict) or not value:
        raise KuryrInputError("the kuryr VIF carrier is empty or not a JSON object")
    out = {}
    for ifname, entry in value.items():
        if isinstance(entry, dict) and "vif" in entry and not is_primitive(entry):
            entry = entry["vif"]  # KuryrPort status.vifs: {ifname: {"default": bool, "vif": primitive}}
        if not is_primitive(entry):
            raise KuryrInputError(f"the kuryr VIF carrier: the entry for {ifname!r} is not an os-vif VIF")
        out[str(ifname)] = entry
    return out


def pick_vhostuser(vifs: dict[str, Any], ifname: str | None) -> tuple[str, Any]:
    """The VIF for ``ifname``; without one, the only ``VIFVHostUser`` in the carrier."""
    if ifname is not None:
        if ifname not in vifs:
            raise KuryrInputError(f"the kuryr VIF carrier has no VIF for {ifname!r} (it has {', '.join(sorted(vifs))})")
        return ifname, vifs[ifname]
    vhu = [(k, v) for k, v in vifs.items() if v.get(NAME) == "VIFVHostUser"]
    if len(vhu) != 1:
        raise KuryrInputError(
            f"the kuryr VIF carrier holds {len(vhu)} VIFVHostUser VIFs ({', '.join(k for k, _ in vhu) or 'none'}); "
            "name the interface (CNI_IFNAME)"
        )
    return vhu[0]
