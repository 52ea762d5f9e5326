"""The agent's unix-socket server for the CNI shim: one request in, one answer out, per connection.

The wire format is :mod:`vhostplug.cni.wire`'s (the shim's module too): the whole request is read up to end of
stream (at most ``wire.MAX_REQUEST``; above it the answer is code 7 at once), decoded once there (environment and
netconf JSON) and handed to the handler as ``(env, netconf dict)``. The socket is 0600 in a 0700 folder. Verbs run
in worker threads so a slow OVSDB never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vhostplug.cni import wire
from vhostplug.cni.spec import LATEST, CniError

LOG = logging.getLogger(__name__)
READ_WAIT = 30.0  # seconds a client may take to send its whole request
Handler = Callable[[dict[str, str], dict[str, Any]], tuple[int, str]]
Observer = Callable[[str, int, float], None]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Everything the client sends until it shuts down its side; :class:`wire.WireError` past ``MAX_REQUEST``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(256 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > wire.MAX_REQUEST:
            raise wire.too_large(size)
        chunks.append(chunk)


class CniServer:
    def __init__(self, path: Path, handler: Handler, observe: Observer | None = None) -> None:
        self.path = Path(path)
        self.handler = handler
        self.observe = observe
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, mode=0o700)
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_socket()):
            raise RuntimeError(f"{self.path} exists and is not a socket; refusing to replace it")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of an earlier run
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _handle(self, data: bytes) -> tuple[str, int, str]:
        try:
            env, conf = wire.decode_request(data)
        except wire.WireError as err:
            return "?", 1, _refusal(err)
        code, out = self.handler(env, conf)
        return env.get("CNI_COMMAND", "?"), code, out

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.perf_counter()
        command = "?"
        try:
            try:
                data = await asyncio.wait_for(read_request(reader), timeout=READ_WAIT)
            except wire.WireError as err:
                code, out = 1, _refusal(err)
            else:  # decoding a few MiB of JSON takes milliseconds: off the event loop, with the verb
                command, code, out = await asyncio.to_thread(self._handle, data)
            elapsed = time.perf_counter() - started
            writer.write(wire.encode_reply(code, elapsed * 1000, out))
            await writer.drain()
            if self.observe is not None:
                self.observe(command, code, elapsed)
        except (TimeoutError, ConnectionError) as exc:
            LOG.warning("CNI request dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _refusal(err: wire.WireError) -> str:
    LOG.info("CNI request refused: [%d] %s", err.code, err.msg)
    return json.dumps(CniError(err.code, err.msg, err.details).to_json(LATEST))
