"""The agent's unix-socket server for the CNI shim: one JSON request in, one JSON answer out, per connection.

Request ``{"env": {CNI_*}, "config": "<netconf>"}``; answer ``{"exitCode", "stdout", "agentMs"}``. The socket is
0600 in a 0700 folder. Verbs run in worker threads so a slow OVSDB never blocks the event loop.
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

from vhostplug.cni.spec import DECODE_FAILURE, CniError

LOG = logging.getLogger(__name__)
MAX_REQUEST = 4 * 1024 * 1024
Handler = Callable[[dict[str, str], str], tuple[int, str]]
Observer = Callable[[str, int, float], None]


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
                req: Any = json.loads(data)
                env = req["env"]
                config = req["config"]
                if not isinstance(env, dict) or not isinstance(config, str):
                    raise ValueError("bad request shape")
                env = {str(k): str(v) for k, v in env.items()}
                command = env.get("CNI_COMMAND", "?")
            except CniError as err:
                out = json.dumps(err.to_json("1.1.0"))
            except (ValueError, KeyError, TypeError):
                out = json.dumps(CniError(DECODE_FAILURE, "malformed request from the CNI shim").to_json("1.1.0"))
            else:
                code, out = await asyncio.to_thread(self.handler, env, config)
            elapsed = time.perf_counter() - started
            reply = {"exitCode": code, "stdout": out, "agentMs": round(elapsed * 1000, 3)}
            writer.write(json.dumps(reply).encode())
            await writer.drain()
            if self.observe is not None:
                self.observe(command, code, elapsed)
        except (TimeoutError, ConnectionError) as exc:
            LOG.warning("CNI request dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
