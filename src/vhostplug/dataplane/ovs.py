"""OVS-DPDK dataplane backend over OVSDB (ovsdbapp on one kept connection; never `ovs-vsctl`).

One attach = one OVSDB transaction that makes the ``datapath_type=netdev`` bridge when it is missing (tagged so we
only ever delete bridges we made), the Port (VLAN tag) and the Interface (type, options, mtu_request, external_ids).
The transaction waits for ovs-vswitchd to apply it (``cur_cfg``), then we read ``ofport`` / ``error`` from the IDL.

Nothing here waits past the current request's deadline (:mod:`vhostplug.deadline`): ovsdbapp's connection thread
holds its lock for as long as a transaction waits for OVSDB (forever, while ``ovsdb-server`` is stopped), so every
wait for that lock and for a transaction's result is bounded, and a transaction whose caller stopped waiting before
the connection thread reached it is dropped, not committed later. Health asks ovs-vswitchd itself
(:mod:`vhostplug.dataplane.vswitchd`), not OVSDB's memory of it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ovs.db import data as ovs_data
from ovs.db import types as ovs_types
from ovsdbapp import exceptions as ovs_exceptions
from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import connection as ovs_connection
from ovsdbapp.backend.ovs_idl import idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from vhostplug import deadline, fsutil, ovsvhost
from vhostplug.dataplane import clientsock, macforget, ovshealth, ovsjson
from vhostplug.dataplane.ovstxn import BoundedTxn
from vhostplug.fsutil import Ownership
from vhostplug.model import Attachment, DataplaneHealth, NetdevPort, VhostUserPort
from vhostplug.ovsvhost import BRIDGE_MARK, ID_ATTACHMENT
from vhostplug.protocols import DataplaneError, DataplaneUnavailable

LOG = logging.getLogger(__name__)
# ovsdbapp logs a traceback when vswitchd did not add an interface; we report that ourselves, with the reason
logging.getLogger("ovsdbapp.schema.open_vswitch.impl_idl").setLevel(logging.CRITICAL)
TABLES = ("Open_vSwitch", "Bridge", "Port")
#: the Interface columns the backend reads or writes; the others (statistics, mac_in_use, ifindex, link_resets, ...)
#: change with every ovs-vswitchd status update and are not worth parsing on each CNI call
INTERFACE_COLUMNS = (
    "name",
    "type",
    "options",
    "external_ids",
    "ofport",
    "error",
    "mtu_request",
    "status",
    "link_state",
    "ingress_policing_rate",
    "ingress_policing_burst",
)


def insert_bridge(api: Any, txn: Any, name: str, datapath_type: str = ovsvhost.DATAPATH_NETDEV) -> Any:
    """A bridge (``datapath_type=netdev`` unless told) with its local port, marked as made by us, inside the caller's
    transaction."""
    bridge = txn.insert(api._tables["Bridge"])
    bridge.name = name
    bridge.datapath_type = datapath_type
    bridge.external_ids = {BRIDGE_MARK: "true"}
    local_iface = txn.insert(api._tables["Interface"])
    local_iface.name = name
    local_iface.type = ovsvhost.TYPE_INTERNAL
    local_port = txn.insert(api._tables["Port"])
    local_port.name = name
    local_port.interfaces = [local_iface]
    bridge.ports = [local_port]
    api._ovs.addvalue("bridges", bridge)
    return bridge


class _AttachCommand(ovs_command.BaseCommand):  # type: ignore[misc]
    """Bridge (if missing) + Port + Interface for one attachment, inside the caller's transaction."""

    def __init__(self, api: Any, att: Attachment, options: dict[str, str]) -> None:
        super().__init__(api)
        self.att = att
        self.options = options

    def run_idl(self, txn: Any) -> None:
        att = self.att
        tables = self.api._tables
        bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", att.bridge, None)
        if bridge is None:
            if not att.may_create_bridge:
                raise DataplaneError(
                    f"bridge {att.bridge} does not exist and this node's policy does not let the agent make bridges"
                )
            bridge = insert_bridge(self.api, txn, att.bridge, att.datapath_type)
        elif bridge.datapath_type != att.datapath_type:
            raise DataplaneError(
                f"bridge {att.bridge} has datapath_type={bridge.datapath_type or 'system'}; "
                f"this node's policy wants datapath_type={att.datapath_type} for vhost-user ports"
            )
        iface = txn.insert(tables["Interface"])
        iface.name = att.port_name
        iface.type = att.mode.ovs_type
        iface.options = self.options
        iface.external_ids = att.external_ids()
        if att.mtu:
            iface.mtu_request = att.mtu
        if att.ingress_policing_rate is not None:
            iface.ingress_policing_rate = att.ingress_policing_rate
            iface.ingress_policing_burst = att.ingress_policing_burst or 0
        port = txn.insert(tables["Port"])
        port.name = att.port_name
        port.interfaces = [iface]
        port.external_ids = {ID_ATTACHMENT: att.key}
        if att.vlan is not None:
            port.tag = att.vlan
        bridge.addvalue("ports", port)
        self.result = iface.uuid


class _NetdevCommand(ovs_command.BaseCommand):  # type: ignore[misc]
    """Bridge (if missing) + Port (VLAN tag) + ``system`` Interface for an existing kernel netdev."""

    def __init__(self, api: Any, port: NetdevPort) -> None:
        super().__init__(api)
        self.port = port

    def run_idl(self, txn: Any) -> None:
        p = self.port
        bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", p.bridge, None)
        if bridge is None:
            bridge = insert_bridge(self.api, txn, p.bridge)
        iface = txn.insert(self.api._tables["Interface"])
        txn.expected_ifaces.add(iface.uuid)
        iface.name = p.name
        iface.type = ovsvhost.TYPE_SYSTEM
        iface.external_ids = dict(p.external_ids)
        if p.mtu:
            iface.mtu_request = p.mtu
        port = txn.insert(self.api._tables["Port"])
        port.name = p.name
        port.interfaces = [iface]
        key = dict(p.external_ids).get(ID_ATTACHMENT)
        if key:
            port.external_ids = {ID_ATTACHMENT: key}
        if p.vlan is not None:
            port.tag = p.vlan
        bridge.addvalue("ports", port)
        self.result = iface.uuid


class _DetachCommand(ovs_command.BaseCommand):  # type: ignore[misc]
    """Remove one Port (and its Interfaces) from whichever bridge holds it: ovsdbapp's del_port would first build a
    Row for every port of every bridge to find it (O(ports) per call)."""

    def __init__(self, api: Any, port_name: str, bump: bool = False) -> None:
        super().__init__(api)
        self.port_name = port_name
        self.bump = bump  # also ask ovs-vswitchd to say when it has applied it (next_cfg)
        self.next_cfg: int | None = None

    def run_idl(self, txn: Any) -> None:
        port = idlutils.row_by_value(self.api.idl, "Port", "name", self.port_name, None)
        if port is None:
            return
        if self.bump:
            self.api._ovs.increment("next_cfg")
        for bridge in self.api.tables["Bridge"].rows.values():
            if _lists_port(bridge, port.uuid):
                bridge.delvalue("ports", port)
        for iface in port.interfaces:
            iface.delete()
        port.delete()

    def post_commit(self, txn: Any) -> None:
        if self.bump:
            value = txn.get_increment_new_value()
            self.next_cfg = value if isinstance(value, int) and value >= 0 else None


def _port_of(api: Any, iface: Any) -> Any:
    """The Port row holding an Interface row: the one of the same name (how ports are made), else found by a scan."""
    port = idlutils.row_by_value(api.idl, "Port", "name", iface.name, None)
    if port is not None and any(i.uuid == iface.uuid for i in port.interfaces):
        return port
    return next((p for p in api.tables["Port"].rows.values() if any(i.uuid == iface.uuid for i in p.interfaces)), None)


def _lists_port(bridge: Any, port_uuid: Any) -> bool:
    """Whether a Bridge row lists the port. Tested on the IDL's raw datum when the row has no pending change:
    ``bridge.ports`` builds (and sorts) a Row for each of the bridge's ports, ~3 ms at 1000 ports."""
    raw = bridge._data.get("ports") if bridge._data and not bridge._changes and not bridge._mutations else None
    if raw is None:
        return any(p.uuid == port_uuid for p in bridge.ports)
    return ovs_data.Atom(ovs_types.UuidType, port_uuid) in raw.values


RECONNECT_MIN_MS = 100
RECONNECT_MAX_MS = 1000


class OvsDataplane:
    """The OVS-DPDK backend. Thread-safe; connects lazily and keeps its connection."""

    name = "ovs"

    def __init__(
        self,
        endpoint: str,
        timeout: float = 5.0,
        ovs_rundir: Path = Path("/var/run/openvswitch"),
        forget_macs: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.ovs_rundir = Path(ovs_rundir)
        self._api: Any = None
        self._lock = threading.Lock()
        self._switch = ovshealth.SwitchWatch(self.ovs_rundir)
        #: the agent's: a port's link change makes its bridge forget the port's MAC (:mod:`.macforget`)
        self.forgetter = macforget.MacForgetter(self.ovs_rundir) if forget_macs else None

    # -- connection --------------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        with self._lock:
            if self._api is not None:
                return self._api
            # a quick probe first: ovsdbapp logs a traceback (whose message itself fails) for every failed start
            probe = self.health()
            if not probe.reachable:
                raise DataplaneUnavailable(f"cannot connect to OVSDB at {self.endpoint}: {probe.detail}")
            ovsjson.install()  # python-ovs without its C parser lexes every byte in Python
            try:
                helper = idlutils.get_schema_helper(self.endpoint, "Open_vSwitch")
                for table in TABLES:
                    helper.register_table(table)
                helper.register_columns("Interface", list(INTERFACE_COLUMNS))
                if self.forgetter is not None:
                    idl = macforget.LinkIdl(self.endpoint, helper, self.forgetter.seen)
                    self.forgetter.start()
                else:
                    idl = ovs_connection.OvsdbIdl(self.endpoint, helper)
                conn = ovs_connection.Connection(idl=idl, timeout=self.timeout)
                # ovsdbapp keeps the connection on the *class*: a class of our own per instance, or a second
                # dataplane (another OVS, or after close()) would silently talk through the first connection
                api_cls = type("VhostplugOvsdbIdl", (impl_idl.OvsdbIdl,), {"_ovsdb_connection": None})
                api = api_cls(conn)
            except Exception as exc:  # ovsdbapp raises bare Exceptions for connection failures
                raise DataplaneUnavailable(f"cannot connect to OVSDB at {self.endpoint}: {_describe(exc)}") from exc
            session = getattr(idl, "_session", None)
            if session is not None:  # back within a second of OVSDB's return (python-ovs waits up to 8 s)
                session.reconnect.set_backoff(RECONNECT_MIN_MS, RECONNECT_MAX_MS)
            self._api = api
            return api

    def _connected_api(self) -> Any:
        api = self._connect()
        session = getattr(api.idl, "_session", None)
        if session is not None and not session.is_connected():
            raise DataplaneUnavailable(f"OVSDB at {self.endpoint} is not reachable (reconnecting)")
        return api

    def watch(self) -> None:
        """Connect now, and so watch the ports' links from now on (see :mod:`.macforget`)."""
        self._connect()

    def close(self) -> None:
        if self.forgetter is not None:
            self.forgetter.stop()
        with self._lock:
            if self._api is not None:
                try:
                    self._api.ovsdb_connection.stop(timeout=1)
                except Exception:  # best effort on shutdown
                    LOG.debug("error stopping OVSDB connection", exc_info=True)
                self._api = None

    @contextmanager
    def _read(self) -> Iterator[Any]:
        api = self._connected_api()
        with self._idl_locked(api):
            yield api

    @contextmanager
    def _idl_locked(self, api: Any) -> Iterator[None]:
        """The IDL's lock, waited for at most until the request's deadline: the connection thread holds it while a
        transaction waits for OVSDB."""
        lock = api.ovsdb_connection.lock
        if not lock.acquire(timeout=deadline.bounded(self.timeout)):
            raise DataplaneUnavailable(f"OVSDB at {self.endpoint} is not answering (a transaction is waiting for it)")
        try:
            yield
        finally:
            lock.release()

    # -- health ------------------------------------------------------------------------------------------------
    def health(self, bridges: Sequence[str] = ()) -> DataplaneHealth:
        """Asked now (see :mod:`vhostplug.dataplane.ovshealth`); not ready while the kept connection, which ADD
        uses, is reconnecting: STATUS and the agent's readiness mean what ADD will do."""
        session = getattr(self._api.idl, "_session", None) if self._api is not None else None
        if session is not None and not session.is_connected():
            return DataplaneHealth(False, False, f"OVSDB at {self.endpoint} is not reachable (reconnecting)")
        found = ovshealth.asked_now(self.endpoint, bridges)
        return found if not found.ok else self._switch.health(fresh=True)

    def ready(self) -> DataplaneHealth:
        """:meth:`health` for every ADD: OVSDB's part read from the kept connection when it is up (no round trip),
        ovs-vswitchd's answer reused for half a second."""
        api = self._api
        session = getattr(api.idl, "_session", None) if api is not None else None
        if session is None or not session.is_connected():
            return self.health()
        with self._idl_locked(api):
            rows = list(api.tables["Open_vSwitch"].rows.values())
            found = ovshealth.of_dpdk_initialized(_first(rows[0].dpdk_initialized) if rows else None)
        return found if not found.ok else self._switch.health(fresh=False)

    # -- attach / detach ---------------------------------------------------------------------------------------
    def attach(
        self, attachment: Attachment, timeout: float = 5.0, meanwhile: Callable[[], None] | None = None
    ) -> VhostUserPort:
        with self._read() as api:
            row = idlutils.row_by_value(api.idl, "Interface", "name", attachment.port_name, None)
            owner = row.external_ids.get(ID_ATTACHMENT) if row is not None else None
        if row is not None:
            existing = self.get_port(attachment.port_name) if owner == attachment.key else None
            if existing is not None:
                return existing
            raise DataplaneError(
                f"OVS port {attachment.port_name} already exists and belongs to "
                f"{owner or 'something other than vhostplug'}"
            )
        options: dict[str, str] = {}
        if attachment.mode.ovs_type == ovsvhost.TYPE_OVS_CLIENT:
            options[ovsvhost.OPTION_SERVER_PATH] = str(attachment.socket_path)
        api = self._connected_api()
        # a plain transaction, not ovs-vsctl's wait for ovs-vswitchd to apply it (next_cfg): the ofport wait below
        # is that wait, and the caller's `meanwhile` runs in between
        txn = BoundedTxn(api, self.timeout)
        txn.add(_AttachCommand(api, attachment, options))
        try:
            txn.commit()
        except (DataplaneError, DataplaneUnavailable):
            raise
        except Exception as exc:
            self._raise_unavailable_or(exc, f"OVSDB transaction adding {attachment.port_name} failed")
        if meanwhile is not None:  # the caller's own work, while ovs-vswitchd applies the new row (~10 ms)
            try:
                meanwhile()
            except BaseException:
                self.detach(attachment.port_name)
                raise
        return self._wait_ofport(attachment.port_name, attachment.bridge, timeout)

    def attach_netdev(self, port: NetdevPort, timeout: float = 5.0) -> VhostUserPort:
        existing = self.get_port(port.name)
        if existing is not None:
            owner = existing.attachment_key
            raise DataplaneError(
                f"netdev {port.name} is already OVS port of bridge {existing.bridge or '?'} "
                f"({'attachment ' + owner if owner else 'not made by vhostplug'})"
            )
        api = self._connected_api()
        try:
            with api.transaction(check_error=True, log_errors=False) as txn:
                txn.add(_NetdevCommand(api, port))
        except Exception as exc:
            self._raise_unavailable_or(exc, f"OVSDB transaction adding {port.name} to {port.bridge} failed")
        return self._wait_ofport(port.name, port.bridge, timeout)

    def netdev_namespace(self) -> str | None:
        """ovs-vswitchd's network namespace (from its pidfile in the run folder) when it is not ours."""
        try:
            pid = int((self.ovs_rundir / "ovs-vswitchd.pid").read_text().strip())
            theirs = os.readlink(f"/proc/{pid}/ns/net")
        except (OSError, ValueError):
            return None
        return None if theirs == os.readlink("/proc/self/ns/net") else f"/proc/{pid}/ns/net"

    def _wait_ofport(self, name: str, bridge: str, timeout: float) -> VhostUserPort:
        timeout = deadline.bounded(timeout)
        until = time.monotonic() + timeout
        while True:
            with self._read() as api:
                row = idlutils.row_by_value(api.idl, "Interface", "name", name, None)
                ofport = _first(row.ofport) if row is not None else None
                error = _first(row.error) if row is not None else None
                if ofport is not None and ofport > 0:
                    port = idlutils.row_by_value(api.idl, "Port", "name", name, None)
                    return self._to_port(api, row, port, bridge)
            if row is None:
                raise DataplaneError(f"OVS port {name} vanished right after it was added")
            if error or ofport == -1 or time.monotonic() > until:
                switch = self._switch.health(fresh=True, limit=ovshealth.HEALTH_WAIT / 2)
                bridge_ok = self._bridge_has_datapath(name)
                self.detach(name)
                if not switch.ok:  # no ofport because nobody applies the database: a transient condition
                    raise DataplaneUnavailable(f"ovs-vswitchd could not add port {name}: {switch.detail}")
                reason = error or f"no ofport after {timeout:.1f}s"
                if not bridge_ok:
                    reason += (
                        "; its bridge has no datapath (is another OVS-DPDK on this host holding the global"
                        " 'ovs-netdev' tap? see ovs-vswitchd's log)"
                    )
                raise DataplaneError(f"ovs-vswitchd could not add port {name}: {reason}")
            time.sleep(0.001)

    def _bridge_has_datapath(self, port_name: str) -> bool:
        """False when the port's bridge never got an OpenFlow port (vswitchd could not open its datapath)."""
        with self._read() as api:
            port = idlutils.row_by_value(api.idl, "Port", "name", port_name, None)
            bridge = self._bridge_of(api, port)
            local = idlutils.row_by_value(api.idl, "Interface", "name", bridge, None) if bridge else None
            ofport = _first(local.ofport) if local is not None else None
            return ofport is not None and ofport > 0

    def detach(self, port_name: str) -> bool:
        # a plain transaction: once the row is gone the port is gone, so no wait for ovs-vswitchd to apply it
        # (that wait grows with the bridge: ~60 ms at 1000 ports)
        return self._remove_port(port_name, bump=False) is not None

    def detach_netdev(self, port_name: str, timeout: float = 5.0) -> bool:
        command = self._remove_port(port_name, bump=True)
        if command is None:
            return False
        if command.next_cfg is None:
            return True
        # ovs-vswitchd closes the netdev when it applies the removal, and writes the link's flags back from its own
        # cache as it does: a link state the caller sets before that would be overwritten
        until = time.monotonic() + deadline.bounded(timeout)
        while time.monotonic() < until:
            with self._read() as api:
                if (api._ovs.cur_cfg or 0) >= command.next_cfg:
                    return True
            time.sleep(0.01)
        LOG.warning("ovs-vswitchd did not apply the removal of %s within %.1f s", port_name, timeout)
        return True

    def _remove_port(self, port_name: str, bump: bool) -> _DetachCommand | None:
        """One transaction removing the port (``bump``: with a ``next_cfg`` increment); None when it was not there."""
        with self._read() as api:
            present = idlutils.row_by_value(api.idl, "Port", "name", port_name, None) is not None
        if not present:
            return None
        command = _DetachCommand(api, port_name, bump=bump)
        try:
            txn = BoundedTxn(api, self.timeout)
            txn.add(command)
            txn.commit()
        except DataplaneUnavailable:
            raise
        except Exception as exc:
            self._raise_unavailable_or(exc, f"OVSDB transaction removing {port_name} failed")
        return command

    def _raise_unavailable_or(self, exc: Exception, what: str) -> None:
        if isinstance(exc, ovs_exceptions.TimeoutException) or not self.health().reachable:
            raise DataplaneUnavailable(f"{what}: OVSDB at {self.endpoint} is unreachable") from exc
        raise DataplaneError(f"{what}: {exc}") from exc

    # -- reads -------------------------------------------------------------------------------------------------
    def get_port(self, port_name: str) -> VhostUserPort | None:
        with self._read() as api:
            row = idlutils.row_by_value(api.idl, "Interface", "name", port_name, None)
            if row is None:
                return None
            port = idlutils.row_by_value(api.idl, "Port", "name", port_name, None)
            return self._to_port(api, row, port, self._bridge_of(api, port))

    def list_ports(self, only_ours: bool = True) -> Sequence[VhostUserPort]:
        result: list[VhostUserPort] = []
        with self._read() as api:
            for row in api.tables["Interface"].rows.values():
                if not ovsvhost.attachment_port(row.type, row.external_ids):
                    continue
                if only_ours and ID_ATTACHMENT not in row.external_ids:
                    continue
                port = _port_of(api, row)
                result.append(self._to_port(api, row, port, self._bridge_of(api, port)))
        return result

    def vhost_sock_dir(self) -> str:
        with self._read() as api:
            return self.vhost_sock_dir_unlocked(api)

    # -- client-mode sockets -----------------------------------------------------------------------------------
    def place_client_socket(self, attachment: Attachment, own: Ownership, wait: float) -> None:
        if attachment.mode.ovs_type != ovsvhost.TYPE_OVS_SERVER:
            return
        src = Path(self.vhost_sock_dir()) / attachment.port_name
        clientsock.wait_and_place(src, attachment.socket_dir, attachment.socket_name, own, wait)

    def return_client_sockets(self, own: Ownership) -> list[str]:
        """Runs every second: OVS's socket folder is looked at first, OVSDB only about the sockets found there."""
        moved: list[str] = []
        try:
            sock_dir = Path(self.vhost_sock_dir())
            names = clientsock.sockets_in(sock_dir)
            ports = [p for p in map(self.get_port, names) if p is not None and p.attachment_key]
        except DataplaneError:
            return moved
        for port in ports:
            target = port.external_ids.get(ovsvhost.ID_SOCKET)
            src = sock_dir / port.name
            if port.ovs_type != ovsvhost.TYPE_OVS_SERVER or not target or not fsutil.is_socket(src):
                continue
            dst = Path(target)
            try:
                clientsock.place(src, dst.parent, dst.name, own)
            except DataplaneError as exc:
                LOG.warning("cannot move re-created socket %s back: %s", src, exc)
                continue
            moved.append(str(dst))
        return moved

    def _bridge_of(self, api: Any, port: Any) -> str:
        if port is None:
            return ""
        for br in api.tables["Bridge"].rows.values():
            if _lists_port(br, port.uuid):
                return str(br.name)
        return ""

    def _to_port(self, api: Any, row: Any, port: Any, bridge: str) -> VhostUserPort:
        sock = ovsvhost.socket_path(row.type, row.name, dict(row.options), self.vhost_sock_dir_unlocked(api))
        mtu = _first(row.mtu_request)
        return VhostUserPort(
            name=row.name,
            bridge=bridge,
            ovs_type=row.type,
            socket_path=sock,
            ofport=_first(row.ofport),
            external_ids=dict(row.external_ids),
            status=dict(row.status),
            mtu=mtu,
            vlan=_first(port.tag) if port is not None else None,
            link_state=_first(row.link_state),
            ingress_policing_rate=int(row.ingress_policing_rate),
            ingress_policing_burst=int(row.ingress_policing_burst),
        )

    def vhost_sock_dir_unlocked(self, api: Any) -> str:
        return ovsvhost.vhost_sock_dir(self.ovs_rundir, dict(api._ovs.other_config).get(ovsvhost.OTHER_CONFIG_SOCK_DIR))


def _describe(exc: BaseException) -> str:
    """``str(exc)``, or its type when that fails (some ovsdbapp exceptions cannot print themselves)."""
    try:
        return str(exc) or type(exc).__name__
    except Exception:
        return type(exc).__name__


def _first(value: Any) -> Any:
    """OVSDB optional columns come back as 0/1-element lists from the IDL."""
    if isinstance(value, list):
        return value[0] if value else None
    return value
