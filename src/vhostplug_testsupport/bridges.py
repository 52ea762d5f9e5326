"""Test cleanup of bridges: remove a bridge only when vhostplug made it (``ovsvhost.BRIDGE_MARK``) and no port but
its own local one is left on it; never a bridge made by someone else. Over the lab's OVSDB helpers."""

from __future__ import annotations

from typing import Any

from vhostplug import ovsvhost
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab import ovsdb


def _uuids(value: Any) -> list[Any]:
    """An OVSDB set of uuids (``["set", [...]]``, or one ``["uuid", u]``) as a list of ``["uuid", u]``."""
    if isinstance(value, list) and value and value[0] == "set":
        return list(value[1])
    return [value] if value else []


def delete_bridge_if_ours(endpoint: str, bridge: str) -> bool:
    """Delete ``bridge`` only when vhostplug made it and no port is left on it but its local one; True when deleted."""
    rows = ovsdb_rpc.select(endpoint, "Bridge", where=[["name", "==", bridge]], columns=["external_ids", "ports"])
    if not rows or ovsdb_rpc.ovs_map(rows[0]["external_ids"]).get(ovsvhost.BRIDGE_MARK) != "true":
        return False
    for port in _uuids(rows[0]["ports"]):
        named = ovsdb_rpc.select(endpoint, "Port", where=[["_uuid", "==", port]], columns=["name"])
        if named and named[0]["name"] != bridge:
            return False
    ovsdb.del_bridge(endpoint, bridge)
    return True
