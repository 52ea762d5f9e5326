"""The webhook's HTTPS server (aiohttp): ``POST /mutate`` and health, with limits on what a client may cost.

Owns: TLS (1.2+ with AEAD suites; cert and key re-read when they change), the size and time limits on a request
(413 before a too large body is read, 408 for a slow one, idle and half-open connections closed), handing freed heap
back to the OS after a large body (glibc ``malloc_trim``), and the serve loop until SIGTERM/SIGINT. What a review
answers is :mod:`vhostplug.webhook.review`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from vhostplug.webhook.config import WebhookConfig
from vhostplug.webhook.resolver import NadResolver
from vhostplug.webhook.review import answer

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
#: TLS 1.2 suites: ECDHE with AEAD only (no CBC, no RSA key exchange); TLS 1.3 suites are all AEAD
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


class CertReloader:
    """An SSLContext whose cert/key are re-read when either file's mtime (or size) changes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_ciphers(TLS12_CIPHERS)
        self.stamp: tuple[float, int, float, int] | None = None
        self.reloads = 0
        self.check(initial=True)

    def _stamp(self) -> tuple[float, int, float, int]:
        c, k = os.stat(self.cert), os.stat(self.key)
        return (c.st_mtime, c.st_size, k.st_mtime, k.st_size)

    def check(self, initial: bool = False) -> bool:
        try:
            stamp = self._stamp()
        except OSError as exc:
            if initial:
                raise
            log.warning("cannot stat TLS files: %s (keeping the loaded cert)", exc)
            return False
        if stamp == self.stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            if initial:
                raise
            log.warning("TLS cert/key changed but do not load (%s); keeping the old one until they do", exc)
            return False
        self.stamp = stamp
        if not initial:
            self.reloads += 1
            log.info("reloaded TLS certificate %s", self.cert)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()


_libc: Any = None


def release_memory() -> None:
    """Hand freed heap back to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    global _libc
    gc.collect()  # request objects may sit in reference cycles that hold the body
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def _too_large(size: int | None) -> web.Response:
    what = f"{size} bytes" if size is not None else "the request body"
    return web.json_response({"error": f"{what} is more than the {MAX_BODY} bytes a review may have"}, status=413)


def make_app(
    resolver: NadResolver,
    config: WebhookConfig,
    certs: CertReloader | None = None,
    body_timeout: float = BODY_TIMEOUT,
) -> web.Application:
    @web.middleware
    async def reload_certs(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if certs is not None:
            certs.check()
        return await handler(request)

    async def mutate(request: web.Request) -> web.Response:
        # refuse what is too large before reading it; a chunked body is read up to the limit only
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _too_large(request.content_length)
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

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[reload_certs], client_max_size=MAX_BODY)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


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
) -> None:
    """Serve until SIGTERM/SIGINT. A connection that has not finished its TLS handshake within ``handshake_timeout``
    (default: ``header_timeout``, at most 10 s), or its request line and headers within ``header_timeout`` (also: an
    idle kept-alive connection), is closed; a body not received within ``header_timeout`` is answered 408."""
    if handshake_timeout is None:
        handshake_timeout = min(HANDSHAKE_TIMEOUT, header_timeout)
    certs = CertReloader(cert, key)
    app = make_app(resolver, config, certs, body_timeout=header_timeout)
    # aiohttp arms keepalive_timeout when a connection is made and closes it if no complete request head arrived
    runner = web.AppRunner(app, keepalive_timeout=header_timeout)
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        runner.server, host, port, ssl=certs.context, ssl_handshake_timeout=handshake_timeout, backlog=128
    )
    log.info("webhook listening on https://%s:%d/mutate", host, port)
    watcher = asyncio.create_task(certs.watch(reload_interval))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        server.close()
        await runner.cleanup()
        await server.wait_closed()
