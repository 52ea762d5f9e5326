"""The webhook's HTTPS server (aiohttp): ``POST /mutate``, and ``/healthz`` and ``/readyz`` (also on a plain-HTTP port
for the kubelet's probes), with limits on what clients may cost.

Owns: the accept loop (at most ``max_connections`` connections; the next is accepted when one closes), the size and
time limits of a request (413 before a too large body is read, 408 for a slow one, idle and half-open connections
closed), the review gate around reading, decoding and answering (429 with a Kubernetes ``Status`` when it is full),
handing memory back after a large body or a burst, the health answers, and the serve loop until SIGTERM/SIGINT. What
a review answers is :mod:`vhostplug.webhook.review`'s; TLS is :mod:`vhostplug.webhook.tls`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from vhostplug.webhook.config import WebhookConfig
from vhostplug.webhook.limits import Busy, ConnectionSlots, ReviewGate
from vhostplug.webhook.memory import fix_mmap_threshold, release_memory
from vhostplug.webhook.resolver import NadResolver
from vhostplug.webhook.review import answer
from vhostplug.webhook.tls import CertReloader

log = logging.getLogger("vhostplug.webhook")

#: bodies larger than this are refused with 413 before they are read (a review carries the pod and, on UPDATE,
#: the old pod; kube-apiserver caps one object at about 3 MiB)
MAX_BODY = 8 * 1024 * 1024
#: seconds a client has for the TLS handshake, for its request line and headers, and for its body
HANDSHAKE_TIMEOUT = 10.0
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
#: after a body this large is answered, freed heap is handed back to the OS (glibc malloc_trim)
TRIM_AFTER = 1024 * 1024
#: when the last connection of a burst at least this large closes, freed heap is handed back too
TRIM_AFTER_CONNECTIONS = 16


@dataclass(frozen=True)
class Limits:
    """How much the webhook takes on at once (see :mod:`vhostplug.webhook.limits`)."""

    #: client connections open at once (each ~300 kB with TLS); the next waits in the kernel's accept queue
    max_connections: int = 64
    #: reviews read, decoded and answered at once
    max_reviews: int = 8
    #: bytes their bodies may announce together (an unannounced, chunked body counts as MAX_BODY)
    max_review_bytes: int = MAX_BODY
    #: reviews that may wait for a slot, and for how long, before 429
    max_waiting: int = 256
    queue_timeout: float = 3.0


@dataclass
class Health:
    """What ``/healthz`` and ``/readyz`` report."""

    gate: ReviewGate
    slots: ConnectionSlots | None = None
    certs: CertReloader | None = None
    draining: bool = False

    def snapshot(self) -> dict[str, Any]:
        g = self.gate.stats
        out: dict[str, Any] = {
            "reviews": {
                "in_flight": g.in_flight,
                "waiting": g.waiting,
                "peak_in_flight": g.peak_in_flight,
                "peak_waiting": g.peak_waiting,
                "refused": g.refused,
                "max_in_flight": self.gate.max_reviews,
            }
        }
        if self.slots is not None:
            out["connections"] = {"open": self.slots.open, "peak": self.slots.peak, "max": self.slots.limit}
        return out

    def not_ready(self) -> str | None:
        """Why the webhook should get no new reviews now (None: it should)."""
        if self.draining:
            return "shutting down"
        if self.certs is not None and self.certs.problem:
            return self.certs.problem
        return None


def _too_large(size: int | None) -> web.Response:
    what = f"{size} bytes" if size is not None else "the request body"
    return web.json_response({"error": f"{what} is more than the {MAX_BODY} bytes a review may have"}, status=413)


def _busy(reason: str) -> web.Response:
    """429 with a Kubernetes ``Status`` and ``Retry-After``: kube-apiserver shows the message to the pod's creator."""
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"vhostplug webhook: too many reviews at once ({reason}); retry",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 1},
        "code": 429,
    }
    return web.json_response(status, status=429, headers={"Retry-After": "1"})


def health_routes(health: Health) -> list[web.RouteDef]:
    """``GET /healthz`` (the process serves: 200) and ``GET /readyz`` (200, or 503 saying why), JSON bodies."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **health.snapshot()})

    async def readyz(request: web.Request) -> web.Response:
        if health.certs is not None:  # the files as they are now (two stats), not as the last watch saw them
            health.certs.check()
        why = health.not_ready()
        if why is not None:
            return web.json_response({"status": "not ready", "reason": why, **health.snapshot()}, status=503)
        return web.json_response({"status": "ready", **health.snapshot()})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


def make_app(
    resolver: NadResolver,
    config: WebhookConfig,
    certs: CertReloader | None = None,
    body_timeout: float = BODY_TIMEOUT,
    limits: Limits = Limits(),
    health: Health | None = None,
) -> web.Application:
    gate = (
        health.gate
        if health is not None
        else ReviewGate(limits.max_reviews, limits.max_review_bytes, limits.max_waiting, limits.queue_timeout)
    )
    health = health if health is not None else Health(gate, certs=certs)
    slots = health.slots

    @web.middleware
    async def reload_certs(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if certs is not None:
            certs.check()
        return await handler(request)

    async def mutate(request: web.Request) -> web.Response:
        # refuse what is too large before reading it; a chunked body is read up to the limit only
        size = request.content_length
        if size is not None and size > MAX_BODY:
            return _too_large(size)
        try:
            async with gate.slot(size if size is not None else MAX_BODY):
                response = await _read_and_answer(request)
        except Busy as exc:
            response = _busy(str(exc))
        if slots is not None and slots.crowded():
            response.force_close()  # no idle kept-alive connections while others wait to be accepted
        return response

    async def _read_and_answer(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(body_timeout):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            release_memory()  # up to MAX_BODY was buffered before the size was known
            return _too_large(None)
        except TimeoutError:
            return web.json_response({"error": f"request body not received within {body_timeout:g}s"}, status=408)
        try:
            status, payload = await answer(raw, resolver, config)
            return web.json_response(payload, status=status)
        finally:
            if len(raw) >= TRIM_AFTER:
                del raw
                release_memory()

    app = web.Application(middlewares=[reload_certs], client_max_size=MAX_BODY)
    app.router.add_post("/mutate", mutate)
    app.router.add_routes(health_routes(health))
    return app


class _Acceptor:
    """Accepts TLS connections one slot at a time and gives each to aiohttp; frees the slot when it closes. Idle
    kept-alive connections cannot take every slot: while 3/4 of them are taken every answer closes its connection."""

    def __init__(self, server: web.Server, slots: ConnectionSlots, certs: CertReloader, handshake_timeout: float):
        self.server, self.slots, self.certs, self.handshake_timeout = server, slots, certs, handshake_timeout
        self.live: set[object] = set()
        self.burst = 0
        self.tasks: set[asyncio.Task[None]] = set()
        lost = server.connection_lost

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            lost(handler, exc)
            self._closed(handler)

        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def _closed(self, handler: object) -> None:
        if handler not in self.live:
            return
        self.live.discard(handler)
        self.slots.release()
        if self.slots.open == 0 and self.burst >= TRIM_AFTER_CONNECTIONS:
            self.burst = 0
            asyncio.get_running_loop().call_soon(release_memory)

    async def run(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.slots.reserve()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and the like: the listening socket is fine
                self.slots.unreserve()
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self.slots.opened()
            self.burst = max(self.burst, self.slots.open)
            task = asyncio.create_task(self._start(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _start(self, conn: socket.socket) -> None:
        made: list[object] = []

        def factory() -> Any:
            handler = self.server()
            made.append(handler)
            self.live.add(handler)
            return handler

        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                factory, conn, ssl=self.certs.context, ssl_handshake_timeout=self.handshake_timeout
            )
        except Exception as exc:  # a failed or timed-out handshake, a reset: the connection is gone
            log.debug("TLS handshake failed: %s", exc)
            conn.close()
            if made:
                self._closed(made[0])
            else:
                self.slots.release()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=128)
    sock.setblocking(False)
    return sock


async def serve(
    host: str,
    port: int,
    cert: Path,
    key: Path,
    resolver: NadResolver,
    config: WebhookConfig,
    reload_interval: float = 1.0,
    header_timeout: float = HEADER_TIMEOUT,
    handshake_timeout: float | None = None,
    limits: Limits = Limits(),
    health_port: int | None = None,
    shutdown_delay: float = 0.0,
) -> None:
    """Serve until SIGTERM/SIGINT. A connection that has not finished its TLS handshake within ``handshake_timeout``
    (default: ``header_timeout``, at most 10 s), or its request line and headers within ``header_timeout`` (also: an
    idle kept-alive connection), is closed; a body not received within ``header_timeout`` is answered 408.
    ``health_port``: also answer ``/healthz`` and ``/readyz`` over plain HTTP there (the kubelet's probes need no TLS
    and never wait behind the connection limit). On SIGTERM/SIGINT ``/readyz`` answers 503 at once and reviews are
    still served for ``shutdown_delay`` seconds (while the endpoint is taken out of the Service), then the server
    stops accepting and finishes what it has."""
    fix_mmap_threshold()
    if handshake_timeout is None:
        handshake_timeout = min(HANDSHAKE_TIMEOUT, header_timeout)
    certs = CertReloader(cert, key)
    slots = ConnectionSlots(limits.max_connections)
    gate = ReviewGate(limits.max_reviews, limits.max_review_bytes, limits.max_waiting, limits.queue_timeout)
    health = Health(gate, slots=slots, certs=certs)
    app = make_app(resolver, config, certs, body_timeout=header_timeout, limits=limits, health=health)
    # aiohttp arms keepalive_timeout when a connection is made and closes it if no complete request head arrived
    runner = web.AppRunner(app, keepalive_timeout=header_timeout)
    await runner.setup()
    assert runner.server is not None
    sock = _listen(host, port)
    stop = asyncio.Event()
    acceptor = _Acceptor(runner.server, slots, certs, handshake_timeout)
    accepting = asyncio.create_task(acceptor.run(sock))
    failed: list[BaseException] = []

    def accept_ended(task: asyncio.Task[None]) -> None:
        # the accept loop never ends by itself: if it failed, stop (the Deployment restarts the process)
        if not task.cancelled() and task.exception() is not None:
            log.error("the accept loop failed: %r", task.exception())
            failed.append(task.exception())  # type: ignore[arg-type]
            stop.set()

    accepting.add_done_callback(accept_ended)
    log.info("webhook listening on https://%s:%d/mutate", host, port)
    probe_runner: web.AppRunner | None = None
    if health_port is not None:
        probes = web.Application()
        probes.router.add_routes(health_routes(health))
        probe_runner = web.AppRunner(probes, access_log=None)
        await probe_runner.setup()
        await web.TCPSite(probe_runner, host, health_port).start()
        log.info("health on http://%s:%d/healthz and /readyz", host, health_port)
    watcher = asyncio.create_task(certs.watch(reload_interval))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        health.draining = True
        if shutdown_delay > 0 and not failed:
            log.info("shutting down in %gs (not ready meanwhile)", shutdown_delay)
            stop.clear()  # a second signal ends the wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), shutdown_delay)
    finally:
        health.draining = True
        for task in (watcher, accepting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()
        await runner.cleanup()
        if probe_runner is not None:
            await probe_runner.cleanup()
    if failed:
        raise RuntimeError("the webhook stopped accepting connections") from failed[0]
