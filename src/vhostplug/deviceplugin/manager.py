"""The device plugin as the agent embeds it: every resource server, the health and rescan loops, the socket watcher.

Synchronous and thread based (grpc's threaded server): ``start()`` serves and registers every resource,
``stop()`` removes our sockets and every dp device-info file we wrote.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vhostplug import deviceinfo
from vhostplug.deviceplugin.config import DevicePluginConfig
from vhostplug.deviceplugin.dataplane import DataplaneDevice
from vhostplug.deviceplugin.server import ResourceServer
from vhostplug.deviceplugin.vdpa import VdpaPoolDevices, discover, matches
from vhostplug.deviceplugin.vhostuser import HealthProbe, VhostUserDevices

log = logging.getLogger(__name__)

#: how often our sockets are checked for a kubelet restart (kubelet wipes the folder)
WATCH_SECONDS = 1.0


def socket_name(resource_name: str) -> str:
    """``vhostplug.io/vhostuser`` -> ``vhostplug.io_vhostuser.sock``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", resource_name) + ".sock"


def _always_ok() -> tuple[bool, str]:
    return True, ""


class _Loop:
    """A daemon thread calling ``fn`` every ``interval`` seconds, or at once when kicked."""

    def __init__(self, name: str, interval: float, fn: Callable[[], None]) -> None:
        self.interval = interval
        self.fn = fn
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        self._kick.set()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.interval)
            self._kick.clear()
            if self._stop.is_set():
                break
            try:
                self.fn()
            except Exception:
                log.exception("device plugin loop %s failed; continuing", self._thread.name)


class DevicePluginManager:
    """All of vhostplug's kubelet device plugin resources on one node."""

    def __init__(
        self,
        config: DevicePluginConfig,
        socket_root: Path,
        device_plugin_dir: Path,
        devinfo_dir: Path,
        container_root: str = deviceinfo.DEFAULT_CONTAINER_ROOT,
        health_probe: HealthProbe = _always_ok,
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        self.config = config
        self.socket_root = Path(socket_root)
        self.device_plugin_dir = Path(device_plugin_dir)
        self.devinfo_dir = Path(devinfo_dir)
        self.vhostuser = VhostUserDevices(
            config.vhostuser, self.socket_root, self.devinfo_dir, container_root, health_probe
        )
        self.dataplane = DataplaneDevice(config.dataplane, self.socket_root) if config.dataplane.enabled else None
        self.pools = [VdpaPoolDevices(p, self.devinfo_dir) for p in config.vdpa.pools]
        self.servers: dict[str, ResourceServer] = {}
        for backend in (self.vhostuser, self.dataplane, *self.pools):
            if backend is not None:
                name = backend.resource_name
                self.servers[name] = ResourceServer(name, self.device_plugin_dir, socket_name(name), backend.allocate)
        self._last_rescan = 0.0
        self._rescan_lock = threading.Lock()
        self._loops = [
            _Loop("dp-watch", watch_seconds, self._watch),
            _Loop("dp-health", config.health_seconds, self._poll_health),
        ]
        if self.pools:
            vdpa_every = min(config.health_seconds, config.vdpa.rescan_seconds)
            self._loops.append(_Loop("dp-vdpa", vdpa_every, self._poll_vdpa))
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.socket_root.mkdir(parents=True, exist_ok=True)
        self.device_plugin_dir.mkdir(parents=True, exist_ok=True)
        self._poll_health()
        if self.pools:
            self.rescan()
        for server in self.servers.values():
            server.start()
        for loop in self._loops:
            loop.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            for loop in self._loops:
                loop.stop()
        for server in self.servers.values():
            server.stop()
        self.vhostuser.cleanup()
        for pool in self.pools:
            pool.cleanup()
        self._started = False

    def __enter__(self) -> DevicePluginManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- loops -----------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        for server in self.servers.values():
            server.check()

    def _poll_health(self) -> None:
        self.servers[self.vhostuser.resource_name].set_devices(self.vhostuser.poll())
        if self.dataplane is not None:
            self.servers[self.dataplane.resource_name].set_devices(self.dataplane.poll())

    def _poll_vdpa(self) -> None:
        if time.monotonic() - self._last_rescan >= self.config.vdpa.rescan_seconds:
            self.rescan()
        else:
            for pool in self.pools:
                self.servers[pool.resource_name].set_devices(pool.poll())

    def rescan(self) -> None:
        """Look at sysfs now, sort devices into pools (the first pool whose selectors match wins), push changes."""
        with self._rescan_lock:
            devices = discover(self.config.vdpa.sysfs_root, self.config.vdpa.dev_root)
            taken: set[str] = set()
            for pool in self.pools:
                mine = [d for d in devices if d.name not in taken and matches(d, pool.pool.selectors)]
                taken |= {d.name for d in mine}
                pool.update(mine)
                self.servers[pool.resource_name].set_devices(pool.poll())
            self._last_rescan = time.monotonic()

    def refresh(self) -> None:
        """Poll health now, without a sysfs rescan (tests and benchmarks; the loops do it on their own)."""
        self._poll_health()
        for pool in self.pools:
            self.servers[pool.resource_name].set_devices(pool.poll())
