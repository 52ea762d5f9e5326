"""Read every vhost-user interface from OVSDB (raw JSON-RPC selects) and retype one to ``dpdkvhostuserclient``.

Socket paths: ``options:vhost-server-path`` for ``dpdkvhostuserclient``; ``<vhost-sock-dir>/<name>`` for
``dpdkvhostuser``, where vhost-sock-dir is ``Open_vSwitch other_config:vhost-sock-dir`` joined under OVS_RUNDIR as
ovs-vswitchd does (OVS_RUNDIR itself when unset).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from vhostplug import ovsvhost
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.model import Mode
from vhostplug.ovsvhost import VHOST_TYPES, vhost_sock_dir

__all__ = ["VHOST_TYPES", "OvsVhostPort", "read_ports", "retype_to_client", "vhost_sock_dir"]
DEFAULT_ENDPOINT = "unix:/var/run/openvswitch/db.sock"


def default_endpoint() -> str:
    rundir = os.environ.get("OVS_RUNDIR")
    return f"unix:{rundir}/db.sock" if rundir else DEFAULT_ENDPOINT


def default_rundir(endpoint: str) -> str:
    """$OVS_RUNDIR, else the folder of a unix endpoint's socket (ovsdb-server's db.sock sits in the run dir)."""
    if os.environ.get("OVS_RUNDIR"):
        return os.environ["OVS_RUNDIR"]
    path = endpoint.removeprefix("unix:")
    return os.path.dirname(path) if path.startswith("/") else "/var/run/openvswitch"


@dataclass(frozen=True)
class OvsVhostPort:
    """One vhost-user Interface row as the audit sees it."""

    name: str
    bridge: str
    ovs_type: str
    socket_path: str
    options: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)
    link_state: str | None = None
    error: str | None = None
    ofport: int | None = None

    @property
    def qemu_mode(self) -> Mode:
        """The role the consumer (QEMU / app) must take on the socket."""
        return Mode.from_ovs_type(self.ovs_type)

    @property
    def deprecated(self) -> bool:
        return self.ovs_type == ovsvhost.TYPE_OVS_SERVER

    @property
    def connected(self) -> bool | None:
        return ovsvhost.connected(self.status, self.link_state)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bridge": self.bridge,
            "type": self.ovs_type,
            "qemu_mode": self.qemu_mode.value,
            "socket": self.socket_path,
            "connected": self.connected,
            "link_state": self.link_state,
            "error": self.error,
            "external_ids": self.external_ids,
        }


def _one(value: Any) -> Any:
    items = ovsdb_rpc.ovs_set(value)
    return items[0] if items else None


def read_ports(endpoint: str, rundir: str) -> tuple[list[OvsVhostPort], str]:
    """Every vhost-user interface and the vhost-sock-dir; raises ``OvsdbRpcError`` when OVSDB is unreachable."""
    ovs_rows = ovsdb_rpc.select(endpoint, "Open_vSwitch", columns=["other_config"])
    other = ovsdb_rpc.ovs_map(ovs_rows[0]["other_config"]) if ovs_rows else {}
    sock_dir = vhost_sock_dir(rundir, other.get(ovsvhost.OTHER_CONFIG_SOCK_DIR))
    bridges = ovsdb_rpc.select(endpoint, "Bridge", columns=["name", "ports"])
    ports = ovsdb_rpc.select(endpoint, "Port", columns=["_uuid", "interfaces"])
    ifaces = ovsdb_rpc.select(
        endpoint,
        "Interface",
        columns=["_uuid", "name", "type", "options", "status", "external_ids", "link_state", "error", "ofport"],
    )
    port_bridge = {
        uuid: str(b["name"]) for b in bridges for uuid in ovsdb_rpc.ovs_set(b["ports"]) if isinstance(uuid, str)
    }
    iface_bridge: dict[str, str] = {}
    for p in ports:
        bridge = port_bridge.get(ovsdb_rpc.ovs_set(p["_uuid"])[0], "")
        for uuid in ovsdb_rpc.ovs_set(p["interfaces"]):
            iface_bridge[uuid] = bridge
    found = []
    for row in ifaces:
        kind = str(row["type"])
        if kind not in VHOST_TYPES:
            continue
        name = str(row["name"])
        options = ovsdb_rpc.ovs_map(row["options"])
        path = ovsvhost.socket_path(kind, name, options, sock_dir)
        ofport = _one(row["ofport"])
        found.append(
            OvsVhostPort(
                name=name,
                bridge=iface_bridge.get(ovsdb_rpc.ovs_set(row["_uuid"])[0], ""),
                ovs_type=kind,
                socket_path=path,
                options=options,
                status=ovsdb_rpc.ovs_map(row["status"]),
                external_ids=ovsdb_rpc.ovs_map(row["external_ids"]),
                link_state=_one(row["link_state"]),
                error=_one(row["error"]),
                ofport=ofport if isinstance(ofport, int) else None,
            )
        )
    return sorted(found, key=lambda p: (p.bridge, p.name)), sock_dir


def retype_to_client(endpoint: str, name: str, server_path: str) -> None:
    """One transaction: Interface ``name`` becomes ``dpdkvhostuserclient`` with ``options:vhost-server-path``.

    Other options are kept. Raises ``OvsdbRpcError`` when the interface is not there.
    """
    rows = ovsdb_rpc.select(endpoint, "Interface", where=[["name", "==", name]], columns=["options"])
    if not rows:
        raise ovsdb_rpc.OvsdbRpcError(f"OVS interface {name!r} does not exist")
    options = ovsdb_rpc.ovs_map(rows[0]["options"])
    options[ovsvhost.OPTION_SERVER_PATH] = server_path
    results = ovsdb_rpc.transact(
        endpoint,
        [
            {
                "op": "update",
                "table": "Interface",
                "where": [["name", "==", name]],
                "row": {"type": ovsvhost.TYPE_OVS_CLIENT, "options": ["map", sorted(options.items())]},
            },
            {"op": "comment", "comment": f"vhostplug migrate-mode: {name} -> {ovsvhost.TYPE_OVS_CLIENT}"},
        ],
    )
    if results[0].get("count") != 1:
        raise ovsdb_rpc.OvsdbRpcError(f"OVS interface {name!r} vanished during the update")
