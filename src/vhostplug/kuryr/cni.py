"""Where a CNI ADD carries kuryr / Neutron / os-vif input, and :func:`from_cni`, the CNI handler's one entry point.

Carriers, first found wins (giving both a VIF and a Neutron port at one place is an error):

1. ``netconf["kuryr"]`` object: ``vif`` (os-vif carrier), ``neutronPortBinding`` (Neutron port), and settings
   ``mountPoint`` (default ``/var/cni/vhostuser``; for an os-vif VIF the folder of its ``path``), ``ovsVhuPath``
   (default ``/var/run/openvswitch/``), ``bridge`` (default ``br-int``, when the input names none).
2. ``netconf["osVif"]`` (os-vif carrier) or ``netconf["neutronPort"]`` (Neutron port).
3. ``netconf["args"]["cni"]["kuryrVif"]`` or ``["neutronPort"]`` (the CNI ``args`` convention, e.g. from Multus).
4. ``CNI_ARGS`` keys ``KURYR_VIF`` (os-vif carrier as JSON) or ``KURYR_NEUTRON_PORT`` (Neutron port as JSON).

An os-vif carrier is a ``VIFVHostUser`` primitive, a kuryr ``PodState`` primitive, ``{ifname: VIF}`` or KuryrPort
``{ifname: {"default", "vif"}}``, as an object or JSON text; with several VIFs the one for ``ifname`` is used.
"""

from __future__ import annotations

import json
from typing import Any

from vhostplug.kuryr.binding import (
    DEFAULT_BRIDGE,
    DEFAULT_MOUNT_POINT,
    DEFAULT_OVS_VHU_PATH,
    KuryrBinding,
    KuryrInputError,
)
from vhostplug.kuryr.neutron import from_neutron_port
from vhostplug.kuryr.osvif import from_vif, pick_vhostuser, vifs_by_ifname

CNI_ARG_VIF = "KURYR_VIF"
CNI_ARG_NEUTRON_PORT = "KURYR_NEUTRON_PORT"


def _json(value: Any, what: str) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise KuryrInputError(f"{what} is not valid JSON: {exc}") from None
    return value


def _settings(netconf: dict[str, Any]) -> tuple[str | None, str, str]:
    kuryr = netconf.get("kuryr")
    kuryr = kuryr if isinstance(kuryr, dict) else {}
    mount = kuryr.get("mountPoint")
    vhu = kuryr.get("ovsVhuPath") or DEFAULT_OVS_VHU_PATH
    bridge = kuryr.get("bridge") or DEFAULT_BRIDGE
    for key, val in (("mountPoint", mount), ("ovsVhuPath", vhu), ("bridge", bridge)):
        if val is not None and (not isinstance(val, str) or (key != "bridge" and not val.startswith("/"))):
            raise KuryrInputError(f"netconf kuryr.{key} {val!r} is not valid")
    return mount, vhu, bridge


def _carriers(netconf: dict[str, Any], cni_args: dict[str, str]) -> list[tuple[str, Any, Any]]:
    """(where, vif carrier, neutron port) at each place, in order."""
    places: list[tuple[str, Any, Any]] = []
    kuryr = netconf.get("kuryr")
    if kuryr is not None:
        if not isinstance(kuryr, dict):
            raise KuryrInputError("netconf 'kuryr' must be an object")
        places.append(("netconf kuryr", kuryr.get("vif"), kuryr.get("neutronPortBinding")))
    places.append(("netconf", netconf.get("osVif"), netconf.get("neutronPort")))
    args = netconf.get("args")
    cni = args.get("cni") if isinstance(args, dict) else None
    if isinstance(cni, dict):
        places.append(("netconf args.cni", cni.get("kuryrVif"), cni.get("neutronPort")))
    places.append(("CNI_ARGS", cni_args.get(CNI_ARG_VIF), cni_args.get(CNI_ARG_NEUTRON_PORT)))
    return places


def from_cni(netconf: dict[str, Any], cni_args: dict[str, str], ifname: str | None = None) -> KuryrBinding | None:
    """The kuryr binding an ADD carries, or None when it carries none (then this is not a kuryr attachment).

    ``ifname`` (CNI_IFNAME) chooses the VIF when a carrier holds several. Raises :class:`KuryrInputError` with a
    clear message on malformed input (wrong vif_type, missing socket, bad mode, unsafe port id...).
    """
    mount, vhu_path, bridge = _settings(netconf)
    for where, vif, port in _carriers(netconf, cni_args):
        if vif is None and port is None:
            continue
        if vif is not None and port is not None:
            raise KuryrInputError(f"{where} carries both an os-vif VIF and a Neutron port: give only one")
        try:
            if port is not None:
                return from_neutron_port(
                    _json(port, "the Neutron port"),
                    mount_point=mount or DEFAULT_MOUNT_POINT,
                    ovs_vhu_path=vhu_path,
                    default_bridge=bridge,
                )
            _, chosen = pick_vhostuser(vifs_by_ifname(vif), ifname)
            return from_vif(chosen, mount_point=mount, ovs_vhu_path=vhu_path, default_bridge=bridge)
        except KuryrInputError as exc:
            raise KuryrInputError(f"{where}: {exc}") from None
    return None
