"""The deadline of the request a worker thread is serving, and the hand-over between the worker and the answer.

The agent's server gives every CNI request a deadline (:data:`BUDGET` per verb) and answers code 11 ("try again")
when it passes, whatever the worker is still doing. Work that outlives its answer must not take effect: the worker
reads its request's :class:`Deadline` from :func:`current` (a thread-local the server sets), waits for locks and
for the switch at most until the deadline, and claims its outcome with :meth:`Deadline.finish` before it returns a
success; the server claims the other way with :meth:`Deadline.abandon`. Exactly one of the two wins, so an ADD that
finished after its caller was told "try again" undoes itself (see ``vhostplug.cni.handler``). A leaf module: the
dataplane and the CNI verbs both read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: seconds the agent gives each verb before it answers code 11; STATUS runs on its own worker and is quick
BUDGET = {"ADD": 8.0, "DEL": 8.0, "CHECK": 8.0, "GC": 8.0, "STATUS": 1.5}
DEFAULT_BUDGET = 8.0

_RUNNING, _FINISHED, _ABANDONED = 0, 1, 2


class Deadline:
    """When the answer is due (``time.monotonic()``), and who answered: the worker or the timeout."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.seconds = seconds
        self._state = _RUNNING
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self._state == _ABANDONED or time.monotonic() >= self.at

    @property
    def abandoned(self) -> bool:
        return self._state == _ABANDONED

    def finish(self) -> bool:
        """The worker's claim: True when its outcome will be the answer (the server has not answered yet)."""
        with self._lock:
            if self._state == _ABANDONED:
                return False
            self._state = _FINISHED
            return True

    def abandon(self) -> bool:
        """The server's claim at the deadline: True when the worker had not finished (its work must not stand)."""
        with self._lock:
            if self._state == _FINISHED:
                return False
            self._state = _ABANDONED
            return True


_NONE = Deadline(float("inf"))
_local = threading.local()


def current() -> Deadline:
    """The deadline of the request this thread serves (one that never passes outside a request)."""
    found: Deadline | None = getattr(_local, "deadline", None)
    return found if found is not None else _NONE


@contextmanager
def serving(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` this thread's :func:`current` for the duration."""
    before = getattr(_local, "deadline", None)
    _local.deadline = deadline
    try:
        yield deadline
    finally:
        _local.deadline = before


def bounded(limit: float) -> float:
    """``limit`` seconds, or less when the current request's deadline comes sooner (never below 0.05 s)."""
    return max(0.05, min(limit, current().remaining()))
