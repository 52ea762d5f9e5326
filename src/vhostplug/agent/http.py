"""The agent's HTTP endpoint on ``metricsPort``: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz``
(readiness), served from the agent's event loop.

- ``/healthz`` answers 200 ``ok`` whenever the agent's event loop runs: it never fails because OVS is down (a
  restarted agent would find OVS just as down), so a liveness probe restarts only an agent that stopped serving.
- ``/readyz`` answers 200 ``ready`` when ADD can work now (the handler's readiness: OVSDB answers, ovs-vswitchd
  answers on its control socket, DPDK initialised, required bridges present) and 503 with the reason otherwise,
  within 2 s (the question is asked on a worker of its own, at most once a second; a slower answer is "not ready").
- ``/metrics``: :mod:`vhostplug.agent.metrics`, rendered on a worker (its OVSDB read must not stall the loop).

It listens on ``metricsAddress`` (127.0.0.1 by default: the DaemonSet's probes use ``host: 127.0.0.1`` in the
node's network namespace; a Prometheus elsewhere needs the address opened up, see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vhostplug.agent.metrics import Metrics, Readiness
from vhostplug.model import DataplaneHealth

LOG = logging.getLogger(__name__)
READY_WAIT = 2.0  # seconds /readyz waits for the answer
READY_FRESH = 1.0  # seconds an answer is reused


class HttpEndpoint:
    def __init__(self, metrics: Metrics, readiness: Readiness) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="http")
        self._seen: tuple[float, DataplaneHealth] | None = None
        self._asking: asyncio.Future[DataplaneHealth] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, port: int, address: str = "127.0.0.1") -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, address, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def ready(self) -> DataplaneHealth:
        """The readiness, asked at most once a second and shared by concurrent askers; not ready after 2 s."""
        seen = self._seen
        if seen is not None and time.monotonic() - seen[0] < READY_FRESH:
            return seen[1]
        if self._asking is None or self._asking.done():
            self._asking = asyncio.get_running_loop().run_in_executor(self._pool, self.readiness)
        try:
            health = await asyncio.wait_for(asyncio.shield(self._asking), timeout=READY_WAIT)
        except TimeoutError:
            health = DataplaneHealth(False, False, f"the readiness check did not answer within {READY_WAIT:g}s")
        except Exception as exc:  # a probe answers; the reason goes into its body
            health = DataplaneHealth(False, False, f"readiness check failed: {exc!r}")
        self._seen = (time.monotonic(), health)
        self.metrics.readiness_seen(health)
        return health

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        health = await self.ready()
        if health.ok:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {health.detail}\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.ready()  # vhostplug_agent_ready as of now
        body = await asyncio.get_running_loop().run_in_executor(self._pool, generate_latest, self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
