"""Guest ping replies, stamped with the host's monotonic clock as they appear in the VMs' serial logs: how long the
traffic stopped around a migration, and how many replies were lost."""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vhostplug.lab.migration import MigrationError

_REPLY_RE = re.compile(rb"bytes from [^:]+: seq=(\d+) (?:ttl=\d+ time=([\d.]+) ms)?")


@dataclass
class PingWatch:
    """Follows serial logs and stamps each guest ping reply (``seq=N``) with the host's monotonic clock.

    The guest's own clock stops while the VM is paused, so the gap is measured on the host: the console line of a
    reply is written within a few ms of its arrival (polling every ``poll`` seconds).
    """

    logs: list[Path]
    poll: float = 0.005
    replies: list[tuple[float, int]] = field(default_factory=list)
    #: the round trip the guest measured for each reply (ms, its own clock): ``seq -> ms``
    rtt_ms: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PingWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        offsets = dict.fromkeys(self.logs, 0)
        partial = dict.fromkeys(self.logs, b"")
        while not self._stop.is_set():
            for path in self.logs:
                try:
                    with path.open("rb") as f:
                        f.seek(offsets[path])
                        data = f.read()
                except OSError:
                    continue
                if not data:
                    continue
                now = time.monotonic()
                offsets[path] += len(data)
                *lines, partial[path] = (partial[path] + data).split(b"\n")
                matches = [m for line in lines if (m := _REPLY_RE.search(line))]
                if matches:
                    with self._lock:
                        self.replies.extend((now, int(m.group(1))) for m in matches)
                        self.rtt_ms.update((int(m.group(1)), float(m.group(2))) for m in matches if m.group(2))
            time.sleep(self.poll)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def snapshot(self) -> list[tuple[float, int]]:
        with self._lock:
            return sorted(self.replies)

    def count_since(self, t: float) -> int:
        return sum(1 for ts, _ in self.snapshot() if ts >= t)

    def wait_replies(self, n: int, since: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count_since(since) < n:
            if time.monotonic() > deadline:
                raise MigrationError(f"only {self.count_since(since)} of {n} ping replies after {timeout:.0f}s")
            time.sleep(0.05)

    def max_gap(self, start: float, end: float) -> tuple[float, int]:
        """The longest silence (seconds) between two replies around ``[start, end]`` and the seqs lost in it."""
        gap, lost, _since = self.max_gap_at(start, end)
        return gap, lost

    def max_gap_at(self, start: float, end: float) -> tuple[float, int, float]:
        """:meth:`max_gap` and when that silence began (the host time of the reply before it)."""
        replies = self.snapshot()
        before = [r for r in replies if r[0] <= start]
        inside = [r for r in replies if start < r[0] <= end]
        after = [r for r in replies if r[0] > end]
        window = before[-1:] + inside + after[:1]
        if len(window) < 2:
            raise MigrationError("no ping replies on both sides of the migration")
        gap, lost, since = 0.0, 0, window[0][0]
        for (t0, s0), (t1, s1) in itertools.pairwise(window):
            if t1 - t0 > gap:
                gap, lost, since = t1 - t0, max(0, s1 - s0 - 1), t0
        return gap, lost, since
