"""What the webhook holds at once, bounded by design: connections, and reviews in flight with their bodies' bytes.

Owns: :class:`ConnectionSlots` (at most ``limit`` client connections exist; the server accepts the next one only when
one has closed, so the others wait in the kernel's accept queue and cost the process nothing — each TLS connection
costs about 300 kB here: asyncio's 256 kB read buffer and OpenSSL's state) and :class:`ReviewGate` (at most
``max_reviews`` reviews are read, decoded and answered at once, and the bodies they announce add up to at most
``max_bytes``; up to ``max_waiting`` more wait in arrival order for at most ``wait_timeout`` seconds; the others are
refused with :class:`Busy`, which the server answers 429). With both, the memory the webhook can be made to hold is a
sum of fixed terms, whatever the number of callers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass


class Busy(Exception):
    """No review slot now: the queue is full, or the wait for a slot ran out."""


@dataclass
class GateStats:
    """Counters a health endpoint shows: what is in flight and waiting now, the peaks, and the refusals."""

    in_flight: int = 0
    in_flight_bytes: int = 0
    waiting: int = 0
    peak_in_flight: int = 0
    peak_waiting: int = 0
    refused: int = 0


class ReviewGate:
    """A FIFO admission gate weighted by body size (a large body cannot starve behind small ones, nor they behind it)."""

    def __init__(self, max_reviews: int, max_bytes: int, max_waiting: int, wait_timeout: float) -> None:
        if max_reviews < 1 or max_bytes < 1 or max_waiting < 0 or wait_timeout <= 0:
            raise ValueError("the review gate needs max_reviews >= 1, max_bytes >= 1, max_waiting >= 0, a timeout > 0")
        self.max_reviews = max_reviews
        self.max_bytes = max_bytes
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self.stats = GateStats()
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, size: int) -> bool:
        s = self.stats
        # one review always fits when nothing else is in flight (size is capped at max_bytes anyway)
        return s.in_flight < self.max_reviews and (s.in_flight == 0 or s.in_flight_bytes + size <= self.max_bytes)

    def _take(self, size: int) -> None:
        s = self.stats
        s.in_flight += 1
        s.in_flight_bytes += size
        s.peak_in_flight = max(s.peak_in_flight, s.in_flight)

    def _release(self, size: int) -> None:
        self.stats.in_flight -= 1
        self.stats.in_flight_bytes -= size
        while self._waiters and self._fits(self._waiters[0][0]):
            size, fut = self._waiters.popleft()
            if not fut.done():
                self._take(size)
                fut.set_result(None)
        self.stats.waiting = len(self._waiters)

    @contextlib.asynccontextmanager
    async def slot(self, size: int) -> AsyncIterator[None]:
        """Hold a slot for a review of ``size`` bytes (the announced length; unknown = ``max_bytes``) while the body
        is read, decoded and answered. Raises :class:`Busy` without waiting when ``max_waiting`` already wait, and
        after ``wait_timeout`` seconds in the queue."""
        size = min(max(size, 0), self.max_bytes)
        if not self._waiters and self._fits(size):
            self._take(size)
        else:
            if len(self._waiters) >= self.max_waiting:
                self.stats.refused += 1
                raise Busy(f"{self.stats.in_flight} reviews in flight and {len(self._waiters)} waiting")
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (size, fut)
            self._waiters.append(entry)
            self.stats.waiting = len(self._waiters)
            self.stats.peak_waiting = max(self.stats.peak_waiting, self.stats.waiting)
            try:
                async with asyncio.timeout(self.wait_timeout):
                    await asyncio.shield(fut)
            except BaseException as exc:
                if fut.done() and not fut.cancelled():
                    if isinstance(exc, TimeoutError):  # granted as the timer fired: take it after all
                        pass
                    else:
                        self._release(size)
                        raise
                else:
                    fut.cancel()
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(entry)
                    self.stats.waiting = len(self._waiters)
                    if isinstance(exc, TimeoutError):
                        self.stats.refused += 1
                        raise Busy(f"no review slot within {self.wait_timeout:g}s") from None
                    raise
        try:
            yield
        finally:
            self._release(size)


class ConnectionSlots:
    """At most ``limit`` connections at once: :meth:`reserve` before accepting, then :meth:`opened` (or
    :meth:`unreserve` when the accept failed), and :meth:`release` when the connection closes."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one connection must be allowed")
        self.limit = limit
        self.open = 0
        self.peak = 0
        self._free = asyncio.Semaphore(limit)

    async def reserve(self) -> None:
        await self._free.acquire()

    def unreserve(self) -> None:
        self._free.release()

    def opened(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)

    def release(self) -> None:
        self.open -= 1
        self._free.release()

    def crowded(self) -> bool:
        """Three quarters of the slots are taken: answers should close their connection rather than keep it idle."""
        return self.open * 4 >= self.limit * 3
