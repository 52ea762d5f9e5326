"""An ovsdbapp transaction that never outlives its caller.

ovsdbapp's connection thread runs queued transactions one after another and holds its lock while one waits for
OVSDB (forever, while ``ovsdb-server`` is stopped). Its own ``commit`` waits for a queue slot with the connection's
timeout and then for the result with the transaction's: here both together are bounded by the current request's
deadline (:mod:`vhostplug.deadline`), and a transaction whose caller stopped waiting before the connection thread
reached it is dropped there, not committed after the hang, for a caller answered "try again" long ago.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from ovsdbapp.backend.ovs_idl import idlutils
from ovsdbapp.backend.ovs_idl import transaction as ovs_transaction

from vhostplug import deadline
from vhostplug.protocols import DataplaneUnavailable


class TxnTimeout(DataplaneUnavailable):
    """OVSDB did not answer in time; ``may_land``: the transaction was sent and may still be applied."""

    def __init__(self, seconds: float, may_land: bool) -> None:
        what = "it may still be applied when OVSDB answers" if may_land else "it was dropped unapplied"
        super().__init__(f"OVSDB did not answer a transaction within {seconds:.1f}s ({what})")
        self.may_land = may_land


class BoundedTxn(ovs_transaction.Transaction):  # type: ignore[misc]
    def __init__(self, api: Any, limit: float) -> None:
        super().__init__(api, api.ovsdb_connection, deadline.bounded(limit), check_error=True, log_errors=False)
        self._gate = threading.Lock()
        self._given_up = False
        self._started = False

    def commit(self) -> Any:
        until = time.monotonic() + self.timeout
        try:
            self.ovsdb_connection.txns.put(self, timeout=self.timeout)
            result = self.results.get(timeout=max(0.0, until - time.monotonic()))
        except (queue.Full, queue.Empty):
            with self._gate:
                self._given_up = True
                started = self._started
            raise TxnTimeout(self.timeout, started) from None
        if isinstance(result, idlutils.ExceptionResult):
            raise result.ex
        return result

    def do_commit(self) -> Any:
        with self._gate:
            if self._given_up:
                return []  # its caller was answered already: never start it
            self._started = True
        return super().do_commit()
