"""The agent's unix-socket server for the CNI shim: one request in, one answer out, per connection.

The wire format is the shim's (see :mod:`vhostplug.cni.shim`, which parses no JSON so that it starts fast): request
``VHP2 <env-bytes>\n`` + NUL-joined ``CNI_*=value`` entries + the netconf bytes; answer ``<exit-code> <agent-ms>\n`` +
the plugin's stdout. The socket is 0600 in a 0700 folder. Verbs run in worker threads so a slow OVSDB never blocks
the event loop.
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

from vhostplug.cni.shim import WIRE_MAGIC
from vhostplug.cni.spec import DECODE_FAILURE, CniError

LOG = logging.getLogger(__name__)
MAX_REQUEST = 4 * 1024 * 1024
Handler = Callable[[dict[str, str], str], tuple[int, str]]
Observer = Callable[[str, int, float], None]


def parse_request(data: bytes) -> tuple[dict[str, str], str]:
    """``(env, netconf)`` of one shim request; CniError (decode failure) when it is not one."""
    head, sep, rest = data.partition(b"\n")
    magic, _, size_text = head.partition(b" ")
    if not sep or magic != WIRE_MAGIC or not size_text.isdigit() or int(size_text) > len(rest):
        raise CniError(DECODE_FAILURE, "malformed request from the CNI shim (is the shim from this agent's release?)")
    size = int(size_text)
    env: dict[str, str] = {}
    for entry in rest[:size].split(b"\0") if size else ():
        key, eq, value = entry.partition(b"=")
        if not eq:
            raise CniError(DECODE_FAILURE, "malformed environment entry from the CNI shim")
        env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    try:
        config = rest[size:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CniError(DECODE_FAILURE, "network configuration on stdin is not UTF-8", str(exc)) from exc
    return env, config


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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.perf_counter()
        command = "?"
        try:
            data = await asyncio.wait_for(reader.read(MAX_REQUEST + 1), timeout=30)
            code, out = 1, ""
            try:
                if len(data) > MAX_REQUEST:
                    raise CniError(DECODE_FAILURE, "request too large")
                env, config = parse_request(data)
                command = env.get("CNI_COMMAND", "?")
            except CniError as err:
                out = json.dumps(err.to_json("1.1.0"))
            else:
                code, out = await asyncio.to_thread(self.handler, env, config)
            elapsed = time.perf_counter() - started
            writer.write(b"%d %.3f\n%s" % (code, elapsed * 1000, out.encode("utf-8", "surrogateescape")))
            await writer.drain()
            if self.observe is not None:
                self.observe(command, code, elapsed)
        except (TimeoutError, ConnectionError) as exc:
            LOG.warning("CNI request dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
