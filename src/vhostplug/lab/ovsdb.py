"""The lab's raw OVSDB writes and reads, in one place: the first ``Open_vSwitch`` row of a fresh database, bridges
cleared with ovs-vswitchd's acknowledgement, lab vhost-user ports (VM pairs, migration, benchmarks), the two-node
lab's DPDK uplinks, a port or a bridge removed, interface statistics.

Everything goes over the product's own one-shot client (:mod:`vhostplug.dataplane.ovsdb_rpc`, which the audit uses
too) and speaks the OVS vocabulary of :mod:`vhostplug.ovsvhost`. The agent itself never comes here: its attachments go
through the ``Dataplane`` seam (:mod:`vhostplug.dataplane.ovs`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from vhostplug import ovsvhost
from vhostplug.dataplane import ovsdb_rpc

#: the root table and its one row's column of bridges
ROOT = ovsdb_rpc.DB


def init_database(endpoint: str, other_config: Mapping[str, str]) -> None:
    """The ``Open_vSwitch`` row a fresh database needs before ovs-vswitchd starts, with its ``other_config``."""
    ovsdb_rpc.transact(
        endpoint,
        [{"op": "insert", "table": ROOT, "row": {"other_config": ["map", sorted(other_config.items())]}}],
    )


def bridge_names(endpoint: str) -> list[str]:
    """Every bridge's name (none when the database cannot be reached)."""
    try:
        rows = ovsdb_rpc.select(endpoint, "Bridge", columns=["name"], where=[])
    except ovsdb_rpc.OvsdbRpcError:
        return []
    return [str(r["name"]) for r in rows]


def transact_and_wait(endpoint: str, ops: list[dict[str, Any]], timeout: float = 10.0) -> None:
    """Run ``ops`` with a ``next_cfg`` bump and wait until ovs-vswitchd has applied them (``cur_cfg``)."""
    bump: list[dict[str, Any]] = [
        {"op": "mutate", "table": ROOT, "where": [], "mutations": [["next_cfg", "+=", 1]]},
        {"op": "select", "table": ROOT, "where": [], "columns": ["next_cfg"]},
    ]
    result = ovsdb_rpc.transact(endpoint, [*ops, *bump])
    target = result[-1]["rows"][0]["next_cfg"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = ovsdb_rpc.select(endpoint, ROOT, columns=["cur_cfg"])
        if rows and rows[0]["cur_cfg"] >= target:
            return
        time.sleep(0.02)


def clear_bridges(endpoint: str, timeout: float = 10.0) -> None:
    """Remove every bridge and wait until ovs-vswitchd has applied it (so it removes their taps itself)."""
    transact_and_wait(
        endpoint, [{"op": "update", "table": ROOT, "where": [], "row": {"bridges": ["set", []]}}], timeout
    )


def add_vhost_client_ports(endpoint: str, bridge: str, ports: Mapping[str, str]) -> None:
    """One OVSDB transaction: a ``datapath_type=netdev`` bridge (made when missing) with one ``dpdkvhostuserclient``
    port per ``{name: socket path}`` (OVS connects to the socket QEMU serves)."""
    existing = ovsdb_rpc.select(endpoint, "Bridge", where=[["name", "==", bridge]], columns=["_uuid"])
    ops: list[dict[str, Any]] = []
    port_refs = []
    for i, (name, path) in enumerate(sorted(ports.items())):
        ops.append(
            {
                "op": "insert",
                "table": "Interface",
                "uuid-name": f"i{i}",
                "row": {
                    "name": name,
                    "type": ovsvhost.TYPE_OVS_CLIENT,
                    "options": ["map", [[ovsvhost.OPTION_SERVER_PATH, path]]],
                },
            }
        )
        ops.append(
            {
                "op": "insert",
                "table": "Port",
                "uuid-name": f"p{i}",
                "row": {"name": name, "interfaces": ["named-uuid", f"i{i}"]},
            }
        )
        port_refs.append(["named-uuid", f"p{i}"])
    if existing:
        ops.append(
            {
                "op": "mutate",
                "table": "Bridge",
                "where": [["name", "==", bridge]],
                "mutations": [["ports", "insert", ["set", port_refs]]],
            }
        )
    else:
        ops.append(
            {
                "op": "insert",
                "table": "Bridge",
                "uuid-name": "br",
                "row": {"name": bridge, "datapath_type": ovsvhost.DATAPATH_NETDEV, "ports": ["set", port_refs]},
            }
        )
        ops.append(
            {
                "op": "mutate",
                "table": ROOT,
                "where": [],
                "mutations": [["bridges", "insert", ["set", [["named-uuid", "br"]]]]],
            }
        )
    ovsdb_rpc.transact(endpoint, ops)


def add_dpdk_port(endpoint: str, bridge: str, port: str, devargs: str, datapath_type: str) -> dict[str, Any]:
    """``port`` as a ``dpdk`` port opened with ``devargs`` on ``bridge`` (made when missing, of ``datapath_type``),
    applied by ovs-vswitchd; returns its Interface's ``ofport`` and ``error`` ({} when the row is missing)."""
    rows = ovsdb_rpc.select(endpoint, "Bridge", columns=["_uuid"], where=[["name", "==", bridge]])
    ops: list[dict[str, Any]] = [
        {
            "op": "insert",
            "table": "Interface",
            "row": {
                "name": port,
                "type": ovsvhost.TYPE_DPDK,
                "options": ["map", [[ovsvhost.OPTION_DPDK_DEVARGS, devargs]]],
            },
            "uuid-name": "iface",
        },
        {
            "op": "insert",
            "table": "Port",
            "row": {"name": port, "interfaces": ["named-uuid", "iface"]},
            "uuid-name": "port",
        },
    ]
    if rows:
        ops.append(
            {
                "op": "mutate",
                "table": "Bridge",
                "where": [["_uuid", "==", rows[0]["_uuid"]]],
                "mutations": [["ports", "insert", ["set", [["named-uuid", "port"]]]]],
            }
        )
    else:
        ops += [
            {
                "op": "insert",
                "table": "Bridge",
                "row": {"name": bridge, "datapath_type": datapath_type, "ports": ["named-uuid", "port"]},
                "uuid-name": "br",
            },
            {
                "op": "mutate",
                "table": ROOT,
                "where": [],
                "mutations": [["bridges", "insert", ["set", [["named-uuid", "br"]]]]],
            },
        ]
    transact_and_wait(endpoint, ops)
    got = ovsdb_rpc.select(endpoint, "Interface", columns=["ofport", "error"], where=[["name", "==", port]])
    return dict(got[0]) if got else {}


def del_port(endpoint: str, bridge: str, name: str) -> None:
    """Take the port ``name`` off ``bridge`` (garbage collection removes its Port/Interface rows); gone is fine."""
    rows = ovsdb_rpc.select(endpoint, "Port", where=[["name", "==", name]], columns=["_uuid"])
    if rows:
        ovsdb_rpc.transact(
            endpoint,
            [
                {
                    "op": "mutate",
                    "table": "Bridge",
                    "where": [["name", "==", bridge]],
                    "mutations": [["ports", "delete", ["set", [r["_uuid"] for r in rows]]]],
                }
            ],
        )


def del_bridge(endpoint: str, bridge: str) -> None:
    """Remove a bridge and its ports (garbage collection removes the Port/Interface rows)."""
    rows = ovsdb_rpc.select(endpoint, "Bridge", where=[["name", "==", bridge]], columns=["_uuid"])
    if not rows:
        return
    ovsdb_rpc.transact(
        endpoint,
        [
            {
                "op": "mutate",
                "table": ROOT,
                "where": [],
                "mutations": [["bridges", "delete", ["set", [r["_uuid"] for r in rows]]]],
            }
        ],
    )


def interface_stats(endpoint: str, names: Iterable[str]) -> dict[str, dict[str, int]]:
    """``statistics`` of OVS interfaces by name (counters are the truth; ``status`` can be stale)."""
    out: dict[str, dict[str, int]] = {}
    for name in names:
        rows = ovsdb_rpc.select(endpoint, "Interface", where=[["name", "==", name]], columns=["statistics"])
        out[name] = {k: int(v) for k, v in ovsdb_rpc.ovs_map(rows[0]["statistics"]).items()} if rows else {}
    return out
