"""Wiring of the node agent: configuration -> dataplane -> CNI handler and server, device plugin, DRA ResourceSlice
publisher, client-mode socket relocator, metrics; runs until SIGTERM/SIGINT and then stops everything it started.

The configuration is checked first, with only its own models loaded: the machinery (ovsdbapp, pyroute2,
prometheus_client, the CNI handler) is imported after, so a refused configuration answers in a fraction of the time
a start takes (``python -X importtime``); aiohttp only when ``metricsPort`` asks for the HTTP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from vhostplug.agent.config import AgentConfig, ConfigError, load
from vhostplug.protocols import Dataplane

LOG = logging.getLogger("vhostplug.agent")


class _OneLineOvsdbappErrors(logging.Filter):
    """ovsdbapp logs every failed connection start with a traceback, as an exception object whose str() itself
    fails: make it the one line an operator needs (the agent answers 11 / 50 meanwhile and retries)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, BaseException):
            exc = record.msg
            try:
                text = str(exc)
            except Exception:
                text = type(exc).__name__
            cause = exc.__cause__
            record.msg = "OVSDB connection failed: %s%s"
            record.args = (text, f" ({type(cause).__name__})" if cause is not None else "")
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.device_plugins: Any = None
        self._dp_config: Any = None
        ownership = config.ownership.to_ownership().resolved("ownership")
        if config.device_plugin is not None:
            from vhostplug.deviceplugin.config import ConfigError as DevicePluginConfigError
            from vhostplug.deviceplugin.config import load_config

            try:  # validated before anything starts: a bad key must leave nothing half-started
                self._dp_config = load_config(config.device_plugin)
            except DevicePluginConfigError as exc:
                raise ConfigError(f"invalid devicePlugin configuration: {exc}") from None
            for name in type(self._dp_config).model_fields:  # kinds that own folders: their owner and group exist
                section = self._dp_config.section(name)
                if callable(getattr(section, "ownership", None)):
                    section.ownership().resolved(f"devicePlugin.{name}")
        policy = config.to_policy()
        self.slices: Any = None
        if config.dra.enabled:  # built (and so validated) before anything starts
            from vhostplug.dra.publisher import from_config as slice_publisher

            try:
                vdpa_pools = self._dp_config.vdpa if self._dp_config is not None else None
                self.slices = slice_publisher(config.dra, policy, vdpa_pools)
            except ValueError as exc:
                raise ConfigError(f"invalid dra configuration: {exc}") from None
        # checked: now the machinery
        from vhostplug.agent.metrics import Metrics
        from vhostplug.agent.server import CniServer
        from vhostplug.cni.handler import CniHandler
        from vhostplug.cni.verbs import HandlerOptions
        from vhostplug.dataplane import registry
        from vhostplug.vdpa.attach import VdpaPolicy

        self.dataplane: Dataplane = registry.create(
            config.dataplane.backend,
            config.dataplane.ovsdb,
            config.dataplane.ovs_rundir,
            config.dataplane.forget_mac_on_link_change,
        )
        vdpa = VdpaPolicy()
        if self._dp_config is not None:
            pools = self._dp_config.vdpa  # the CNI finds vDPA devices where, and as, the pools do
            vdpa = VdpaPolicy(pools.sysfs_root, pools.dev_root, tuple(pools.pools))
        options = HandlerOptions(
            ownership=ownership,
            state_dir=config.state_dir,
            vdpa=vdpa,
            policy=policy,
        )
        self.handler = CniHandler(self.dataplane, options)
        self.dra: Any = None
        if config.dra.enabled:  # the kubelet plugin (vhostplug.dra.node)
            from vhostplug.dra.node import DraNode

            try:
                dra_vdpa = options.vdpa if options.vdpa is not None and options.vdpa.pools else None
                self.dra = DraNode(
                    config.dra, self.dataplane, options.policy, options.ownership, config.state_dir, dra_vdpa
                )
            except ValueError as exc:
                raise ConfigError(f"invalid dra configuration: {exc}") from None
        self.metrics = Metrics(config.dataplane.ovsdb if config.dataplane.backend == "ovs" else None)
        self.http: Any = None
        if config.metrics_port:  # aiohttp only for an agent that serves /metrics, /healthz and /readyz
            from vhostplug.agent.http import HttpEndpoint

            self.http = HttpEndpoint(self.metrics, self.handler.readiness)
        self.server = CniServer(config.listen, self.handler.handle, self.metrics.observe)
        self._stop = asyncio.Event()

    def health_probe(self) -> tuple[bool, str]:
        h = self.dataplane.health()
        return h.ok, h.detail

    def _start_device_plugins(self) -> None:
        if self._dp_config is None:
            return
        from vhostplug.deviceplugin.manager import DevicePluginManager

        self.device_plugins = DevicePluginManager(
            self._dp_config,
            socket_root=self.config.socket_root,
            device_plugin_dir=self.config.device_plugin_dir,
            devinfo_dir=self.config.devinfo_dir,
            container_root=self.config.container_socket_root,
            health_probe=self.health_probe,
        )
        self.device_plugins.start()

    async def _relocator(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.dataplane.watch)  # connected from the start, links in view
                moved = await asyncio.to_thread(self.handler.relocate_client_sockets)
                for port in await asyncio.to_thread(self.handler.sweep_orphans):
                    LOG.info("port %s of a failed ADD removed", port)
            except Exception as exc:  # the agent must outlive any dataplane trouble; say so once per outage
                moved = []
                if not failing:
                    LOG.warning("client-mode socket relocation paused: %s (retrying)", exc)
                failing = True
            else:
                if failing:
                    LOG.info("client-mode socket relocation running again")
                failing = False
            for path in moved:
                LOG.info("moved re-created client-mode socket back to %s", path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.relocate_seconds)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.config.socket_root.mkdir(parents=True, exist_ok=True)
        await self.server.start()
        try:
            self._start_device_plugins()
            if self.slices is not None:
                self.slices.start()
            if self.dra is not None:
                await asyncio.to_thread(self.dra.start)
            if self.http is not None:
                await self.http.start(self.config.metrics_port, self.config.metrics_address)
            LOG.info("vhostplug agent listening on %s (OVSDB %s)", self.config.listen, self.config.dataplane.ovsdb)
            await self._relocator()
        finally:
            if self.http is not None:
                await self.http.stop()
            await self.server.stop()
            if self.device_plugins is not None:
                self.device_plugins.stop()
            if self.slices is not None:
                self.slices.stop()
            if self.dra is not None:
                self.dra.stop()
            self.dataplane.close()
            LOG.info("vhostplug agent stopped")


def run(
    config_file: Path | None = None,
    ovsdb: str | None = None,
    listen: Path | None = None,
    socket_root: Path | None = None,
    device_plugin_dir: Path | None = None,
    devinfo_dir: Path | None = None,
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("ovsdbapp.backend.ovs_idl").addFilter(_OneLineOvsdbappErrors())
    try:
        config = load(
            config_file,
            {
                "ovsdb": ovsdb,
                "listen": listen,
                "socketRoot": socket_root,
                "devicePluginDir": device_plugin_dir,
                "devinfoDir": devinfo_dir,
            },
        )
        if device_plugin_dir is not None and config.device_plugin is None:
            # asking for kubelet's device-plugin folder means asking for the device plugin: run it with its defaults
            LOG.info("--device-plugin-dir given and no devicePlugin block: device plugin enabled with defaults")
            config = config.model_copy(update={"device_plugin": {}})
        elif config.device_plugin is None:
            LOG.info("device plugin off: no devicePlugin block in the configuration and no --device-plugin-dir")
        agent = Agent(config)
    except (ConfigError, ValueError) as exc:
        print(f"vhostplug agent: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(agent.run())
    except ConfigError as exc:
        print(f"vhostplug agent: {exc}", file=sys.stderr)
        return 2
    return 0
