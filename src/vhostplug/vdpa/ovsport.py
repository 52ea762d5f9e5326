"""A vDPA representor as an OVS port: a kernel netdev (Interface type ``system``) on the attachment's bridge, made in
one OVSDB transaction with its Port (VLAN tag), ``mtu_request`` and the external_ids that let DEL, CHECK and GC
rebuild the attachment from OVSDB alone. On a ``datapath_type=netdev`` (OVS-DPDK) bridge ovs-vswitchd opens such a
port through AF_PACKET; on a kernel (``system``) bridge it is a plain datapath port. Uses the OVS backend's kept
connection."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import idlutils

from vhostplug.dataplane.ovs import OvsDataplane, insert_bridge
from vhostplug.model import EXTERNAL_ID_ATTACHMENT, VhostUserPort
from vhostplug.protocols import DataplaneError

#: external_ids key naming the vDPA device of a representor port (what marks a port as a vDPA attachment)
ID_VDPA_DEVICE = "vhostplug-vdpa-device"


class _NetdevPortCommand(ovs_command.BaseCommand):  # type: ignore[misc]
    def __init__(
        self, api: Any, bridge: str, name: str, external_ids: dict[str, str], mtu: int | None, vlan: int | None
    ) -> None:
        super().__init__(api)
        self.bridge, self.name, self.ids, self.mtu, self.vlan = bridge, name, external_ids, mtu, vlan

    def run_idl(self, txn: Any) -> None:
        tables = self.api._tables
        bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge, None)
        if bridge is None:  # made as the vhost-user path makes it: an OVS-DPDK bridge, marked as ours
            bridge = insert_bridge(self.api, txn, self.bridge)
        iface = txn.insert(tables["Interface"])
        txn.expected_ifaces.add(iface.uuid)
        iface.name = self.name
        iface.type = "system"
        iface.external_ids = self.ids
        if self.mtu:
            iface.mtu_request = self.mtu
        port = txn.insert(tables["Port"])
        port.name = self.name
        port.interfaces = [iface]
        port.external_ids = {EXTERNAL_ID_ATTACHMENT: self.ids[EXTERNAL_ID_ATTACHMENT]}
        if self.vlan is not None:
            port.tag = self.vlan
        bridge.addvalue("ports", port)
        self.result = iface.uuid


def attach(
    dp: OvsDataplane,
    bridge: str,
    name: str,
    external_ids: dict[str, str],
    mtu: int | None = None,
    vlan: int | None = None,
    timeout: float = 5.0,
) -> VhostUserPort:
    """Add netdev ``name`` to ``bridge``; wait until ovs-vswitchd gave it an ofport (else remove it and raise)."""
    existing = dp.get_port(name)
    if existing is not None:
        owner = existing.attachment_key
        raise DataplaneError(
            f"netdev {name} is already OVS port of bridge {existing.bridge or '?'} "
            f"({'attachment ' + owner if owner else 'not made by vhostplug'})"
        )
    api = dp._connected_api()
    try:
        with api.transaction(check_error=True, log_errors=False) as txn:
            txn.add(_NetdevPortCommand(api, bridge, name, external_ids, mtu, vlan))
    except Exception as exc:
        dp._raise_unavailable_or(exc, f"OVSDB transaction adding {name} to {bridge} failed")
    deadline = time.monotonic() + timeout
    while True:
        port = dp.get_port(name)
        if port is None:
            raise DataplaneError(f"OVS port {name} vanished right after it was added")
        error = port.status.get("error") or _iface_error(dp, name)
        if port.ofport is not None and port.ofport > 0:
            return port
        if error or port.ofport == -1 or time.monotonic() > deadline:
            dp.detach(name)
            raise DataplaneError(f"ovs-vswitchd could not add {name}: {error or f'no ofport after {timeout:.1f}s'}")
        time.sleep(0.005)


def _iface_error(dp: OvsDataplane, name: str) -> str | None:
    with dp._read() as api:
        row = idlutils.row_by_value(api.idl, "Interface", "name", name, None)
        return (row.error[0] if row.error else None) if row is not None else None


def list_ports(dp: OvsDataplane) -> Sequence[VhostUserPort]:
    """Every representor port vhostplug made (Interface external_ids carry the vDPA device)."""
    with dp._read() as api:
        names = [r.name for r in api.tables["Interface"].rows.values() if ID_VDPA_DEVICE in r.external_ids]
    return [p for p in map(dp.get_port, names) if p is not None]


def switch_netns(dp: OvsDataplane) -> str | None:
    """The network namespace ovs-vswitchd runs in (where representors must be for it to open them), as a path;
    None when that is our own (the usual node: OVS in the host namespace)."""
    try:
        pid = int((dp.ovs_rundir / "ovs-vswitchd.pid").read_text().strip())
        theirs = os.readlink(f"/proc/{pid}/ns/net")
    except (OSError, ValueError):
        return None
    return None if theirs == os.readlink("/proc/self/ns/net") else f"/proc/{pid}/ns/net"
