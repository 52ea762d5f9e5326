"""The agent's unix-socket server for the CNI shim: one request in, one answer out, per connection.

The wire format is :mod:`vhostplug.cni.wire`'s (the shim's module too): the whole request is read up to end of
stream (at most ``wire.MAX_REQUEST``; above it the answer is code 7 at once), decoded once there (environment and
netconf JSON) and handed to the handler as ``(env, netconf dict)``. The socket is 0600 in a 0700 folder.

Every request has a deadline (:data:`vhostplug.deadline.BUDGET`, counted from its arrival) and a worker: ADD, DEL,
CHECK and GC run on a bounded pool of their own, STATUS (and the decoding of every request, milliseconds) on a
second small pool that the verbs never occupy, so STATUS answers within its budget whatever else is queued. When a
deadline passes the answer is code 11 ("try again") at once; a request still queued then never starts, and one that
is running is told through :meth:`vhostplug.deadline.Deadline.abandon` (an ADD undoes what it made).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vhostplug import deadline
from vhostplug.cni import wire
from vhostplug.cni.spec import LATEST, TRY_AGAIN_LATER, CniError

LOG = logging.getLogger(__name__)
READ_WAIT = 30.0  # seconds a client may take to send its whole request
VERB_WORKERS = 8  # threads for ADD/DEL/CHECK/GC; the handler serialises the work that needs it, the rest waits
QUICK_WORKERS = 2  # threads for STATUS and request decoding
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
    def __init__(
        self, path: Path, handler: Handler, observe: Observer | None = None, workers: int = VERB_WORKERS
    ) -> None:
        self.path = Path(path)
        self.handler = handler
        self.observe = observe
        self._server: asyncio.AbstractServer | None = None
        self._verbs = ThreadPoolExecutor(workers, thread_name_prefix="cni-verb")
        self._quick = ThreadPoolExecutor(QUICK_WORKERS, thread_name_prefix="cni-quick")

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
        # running verbs are bounded by their own deadlines; queued ones would only find theirs passed
        self._verbs.shutdown(wait=False, cancel_futures=True)
        self._quick.shutdown(wait=False, cancel_futures=True)

    def _run(self, dl: deadline.Deadline, env: dict[str, str], conf: dict[str, Any]) -> tuple[int, str]:
        """One verb on a worker: not started at all when its deadline passed while it was queued."""
        if dl.expired():
            return 1, _too_late(env.get("CNI_COMMAND", "?"), dl, conf)
        with deadline.serving(dl):
            answer = self.handler(env, conf)
        dl.finish()  # DEL, CHECK, GC and failures stand as they are; ADD claimed its success itself
        return answer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.perf_counter()
        arrived = time.monotonic()
        command = "?"
        try:
            loop = asyncio.get_running_loop()
            try:
                data = await asyncio.wait_for(read_request(reader), timeout=READ_WAIT)
                # decoding a few MiB of JSON takes milliseconds: off the event loop, on the quick pool
                env, conf = await loop.run_in_executor(self._quick, wire.decode_request, data)
            except wire.WireError as err:
                code, out = 1, _refusal(err)
            else:
                command = env.get("CNI_COMMAND", "?")
                budget = deadline.BUDGET.get(command, deadline.DEFAULT_BUDGET)
                dl = deadline.Deadline(budget - (time.monotonic() - arrived))
                pool = self._quick if command == "STATUS" else self._verbs
                work = loop.run_in_executor(pool, self._run, dl, env, conf)
                try:
                    code, out = await asyncio.wait_for(asyncio.shield(work), timeout=dl.remaining())
                except TimeoutError:
                    if dl.abandon():
                        code, out = 1, _too_late(command, dl, conf)
                    else:  # finished in the same instant: its own answer stands
                        code, out = await work
            elapsed = time.perf_counter() - started
            writer.write(wire.encode_reply(code, elapsed * 1000, out))
            await writer.drain()
            if self.observe is not None:
                self.observe(command, _cni_code(code, out), elapsed)
        except (TimeoutError, ConnectionError) as exc:
            LOG.warning("CNI request dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _too_late(command: str, dl: deadline.Deadline, conf: dict[str, Any]) -> str:
    asked = conf.get("cniVersion")
    LOG.warning("CNI %s not answered within %.1fs: answered try again later", command, dl.seconds)
    err = CniError(
        TRY_AGAIN_LATER,
        f"the vhostplug agent could not finish {command} within {dl.seconds:.1f}s",
        "the switch (OVSDB / ovs-vswitchd) is slow or not answering, or the agent is busy; nothing of this request"
        " is left in place; try again later",
    )
    return json.dumps(err.to_json(asked if isinstance(asked, str) else LATEST))


def _cni_code(exit_code: int, out: str) -> int:
    """The CNI error code of an answer (0 for a success), for the metrics."""
    if exit_code == 0:
        return 0
    try:
        code = json.loads(out).get("code")
    except (ValueError, AttributeError):
        return exit_code
    return code if isinstance(code, int) else exit_code


def _refusal(err: wire.WireError) -> str:
    LOG.info("CNI request refused: [%d] %s", err.code, err.msg)
    return json.dumps(CniError(err.code, err.msg, err.details).to_json(LATEST))
