"""The OVS backend's health questions: can an ADD work now?

OVSDB answers a fresh connection (the kept one may lag behind) within a second, DPDK was initialised, the bridges the
node policy wants exist (one ``transact`` for all of it), and ovs-vswitchd itself answers on its control socket
(:mod:`vhostplug.dataplane.vswitchd`), since OVSDB keeps ``dpdk_initialized=true`` after the switch died. No question
waits past the current request's deadline (:mod:`vhostplug.deadline`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vhostplug import deadline
from vhostplug.dataplane import ovsdb_rpc, vswitchd
from vhostplug.model import DataplaneHealth

HEALTH_WAIT = 1.0  # seconds a health question may wait for OVSDB or ovs-vswitchd (STATUS answers within 2 s)
VSWITCHD_FRESH = 0.5  # seconds the attach path trusts the last answer of ovs-vswitchd


def of_dpdk_initialized(dpdk_initialized: object) -> DataplaneHealth:
    """A reachable OVSDB's health from its ``dpdk_initialized`` (None: no Open_vSwitch row at all)."""
    if dpdk_initialized is None:
        return DataplaneHealth(True, False, "Open_vSwitch table is empty (database not initialised)")
    if dpdk_initialized is not True:
        return DataplaneHealth(True, False, "DPDK is not initialised in ovs-vswitchd")
    return DataplaneHealth(True, True)


def asked_now(endpoint: str, bridges: Sequence[str] = ()) -> DataplaneHealth:
    """OVSDB's part, on a fresh connection: reachable, DPDK initialised, ``bridges`` present."""
    ops: list[dict[str, Any]] = [
        {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["dpdk_initialized"]},
        {"op": "select", "table": "Bridge", "where": [], "columns": ["name"]},
    ]
    try:
        answers = ovsdb_rpc.transact(endpoint, ops if bridges else ops[:1], timeout=deadline.bounded(HEALTH_WAIT))
    except ovsdb_rpc.OvsdbRpcError as exc:
        return DataplaneHealth(False, False, str(exc))
    rows = answers[0]["rows"]
    found = of_dpdk_initialized(rows[0].get("dpdk_initialized") if rows else None)
    missing = sorted(set(bridges) - {r.get("name") for r in answers[1]["rows"]}) if bridges else []
    if found.ok and missing:
        return DataplaneHealth(True, False, f"bridge {', '.join(missing)} does not exist (and may not be made here)")
    return found


class SwitchWatch:
    """ovs-vswitchd's answer on its control socket, asked fresh or reused for :data:`VSWITCHD_FRESH` seconds."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir
        self._seen: tuple[float, str | None] = (-1.0, None)  # (when, problem) of the last question

    def health(self, fresh: bool, limit: float = HEALTH_WAIT) -> DataplaneHealth:
        when, problem = self._seen
        if fresh or time.monotonic() - when > VSWITCHD_FRESH:
            problem = vswitchd.problem(self.rundir, deadline.bounded(limit))
            self._seen = (time.monotonic(), problem)
        return DataplaneHealth(True, problem is None, problem or "")
