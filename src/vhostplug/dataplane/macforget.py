"""When the link of one of vhostplug's vhost-user ports goes up or down, its bridge forgets the MAC that the port's
own record names (``external_ids:attached-mac``, the interface MAC the CNI ADD or the claim gave it), so frames to
that MAC flood until the switch learns it again from the MAC's owner.

Why: a VM's live migration. The source port's link goes down when the source QEMU stops the VM, the target port's
goes up when the target QEMU resumes it, on the same node or another. OVS learns the VM's move (its RARP, its first
frame) in a PMD's upcall, which only marks the MAC table for revalidation: nothing wakes ovs-vswitchd's main thread,
the one that re-points the datapath flows, so frames to the VM went on into the dead source port (source node) or
were dropped as going back out of the uplink they came in by (a target node that had the VM behind its uplink) until
something else woke the switch — often the source pod's CNI DEL, a few hundred ms later (docs/benchmarks.md, "Live
migration downtime"). Forgetting the MAC is a request to the switch's control socket, which wakes that thread, and
the frames flood (reaching the VM wherever it now is) until the switch learns it again. On a pod's first link up
nothing is learned yet and nothing changes. Only a transition between two states counts: a port's first state (no
state yet -> down or up), a row seen for the first time (the agent's start, a reconnect) do not.

Owns :class:`LinkIdl` (an ovsdbapp IDL whose row notifications report those transitions; it runs in the IDL's
connection thread and only looks at its own tables) and :class:`MacForgetter` (a thread that asks ovs-vswitchd, so
the IDL's thread, which every OVSDB transaction of the agent waits for, never waits on the switch).
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovsdbapp.backend.ovs_idl import connection as ovs_connection

from vhostplug import ovsvhost
from vhostplug.dataplane import vswitchd

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkChange:
    """One of our vhost-user ports' link went ``state``; ``mac`` on ``vlan`` is what its record names."""

    port: str
    bridge: str
    mac: str
    vlan: int
    state: str


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def link_change(idl: Any, row: Any, old: Any) -> LinkChange | None:
    """The change that an Interface row update ``row`` (old values of its changed columns in ``old``) is, when it
    is a link-state transition of a vhost-user port of ours that names its MAC; else None."""
    changed = getattr(old, "_data", None) or {}
    if "link_state" not in changed:
        return None
    state, before = _first(row.link_state), _first(old.link_state)
    ids = dict(row.external_ids)
    mac = ids.get(ovsvhost.ID_ATTACHED_MAC, "")
    if not state or not before or state == before or row.type not in ovsvhost.VHOST_TYPES or not mac:
        return None
    if ovsvhost.ID_ATTACHMENT not in ids and ovsvhost.ID_DRA_CLAIM not in ids:
        return None
    for port in idl.tables["Port"].rows.values():
        if any(i.uuid == row.uuid for i in port.interfaces):
            for bridge in idl.tables["Bridge"].rows.values():
                if any(p.uuid == port.uuid for p in bridge.ports):
                    return LinkChange(row.name, bridge.name, mac, int(_first(port.tag) or 0), state)
    return None


class LinkIdl(ovs_connection.OvsdbIdl):  # type: ignore[misc]
    """The agent's IDL, telling ``on_change`` about each :func:`link_change` as it reads it from OVSDB."""

    def __init__(self, remote: str, schema_helper: Any, on_change: Callable[[LinkChange], None]) -> None:
        super().__init__(remote, schema_helper)
        self._on_change = on_change

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        if event != "update" or updates is None or row._table.name != "Interface":
            return
        try:
            change = link_change(self, row, updates)
        except Exception:  # never let a surprise in a row stop the connection thread
            LOG.debug("cannot read the link change of %s", getattr(row, "name", "?"), exc_info=True)
            return
        if change is not None:
            self._on_change(change)


class MacForgetter:
    """Asks ovs-vswitchd (control socket in ``rundir``) to forget the MAC of each :class:`LinkChange` it is given,
    in order, from a thread of its own; :attr:`done` keeps what each request answered (None: forgotten).

    After a link went down it looks once more, ``recheck`` seconds later, and forgets the MAC again if the bridge
    knows it by then (behind the dead port, or already where the VM now is: flooding until it is learned again costs
    little): a lab timeline showed the flows toward a migrating VM pointing at its dead source port again 6 ms after
    the first forgetting, learned from a frame the switch handled after the port's link went down."""

    def __init__(self, rundir: Path, timeout: float = 1.0, recheck: float = 0.02) -> None:
        self.rundir = rundir
        self.timeout = timeout
        self.recheck = recheck
        self.done: list[tuple[LinkChange, str | None]] = []
        self._queue: queue.SimpleQueue[LinkChange | None] = queue.SimpleQueue()
        self._due: list[tuple[float, int, LinkChange]] = []
        self._n = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failing = False

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mac-forget", daemon=True)
                self._thread.start()

    def seen(self, change: LinkChange) -> None:
        self._queue.put(change)

    def stop(self, timeout: float = 2.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            wait = max(0.0, self._due[0][0] - time.monotonic()) if self._due else None
            try:
                change = self._queue.get(timeout=wait)
            except queue.Empty:
                _when, _n, change = heapq.heappop(self._due)
                if self._knows(change):
                    self._forget(change, "again")
                continue
            if change is None:
                return
            if self._forget(change, "") and change.state == "down":
                self._n += 1
                heapq.heappush(self._due, (time.monotonic() + self.recheck, self._n, change))

    def _knows(self, change: LinkChange) -> bool:
        try:
            return change.mac.lower() in vswitchd.fdb_show(self.rundir, change.bridge, self.timeout).lower()
        except vswitchd.UnixctlError:
            return False

    def _forget(self, change: LinkChange, again: str) -> bool:
        why = vswitchd.forget_mac(self.rundir, change.bridge, change.port, change.mac, change.vlan, self.timeout)
        self.done = [*self.done[-99:], (change, why)]
        if why is None:
            self._failing = False
            LOG.info(
                "port %s link %s: bridge %s forgot MAC %s%s (frames to it flood until it is learned again)",
                change.port,
                change.state,
                change.bridge,
                change.mac,
                f" {again}" if again else "",
            )
            return True
        if not self._failing:  # said once per outage: a switch that is down says so elsewhere too
            self._failing = True
            LOG.warning("port %s link %s: MAC %s not forgotten: %s", change.port, change.state, change.mac, why)
        return False
