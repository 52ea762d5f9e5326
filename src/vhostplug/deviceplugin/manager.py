"""The device plugin as the agent embeds it: every resource server, the health and rescan loops, the socket watcher.

Synchronous and thread based (grpc's threaded server): ``start()`` serves and registers every resource,
``stop()`` removes our sockets and every dp device-info file we wrote. The device kinds come from
:data:`vhostplug.deviceplugin.kinds.KINDS`; nothing here names one.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from vhostplug import deviceinfo
from vhostplug.deviceplugin.config import DevicePluginConfig
from vhostplug.deviceplugin.kinds import KINDS
from vhostplug.deviceplugin.server import ResourceServer
from vhostplug.deviceplugin.types import HealthProbe, NodeContext
from vhostplug.protocols import DeviceKind, DeviceSource

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
        node = NodeContext(self.socket_root, self.devinfo_dir, container_root, health_probe)
        self.kinds: dict[str, DeviceKind] = {
            name: kind.build(node, config.section(name)) for name, kind in KINDS.items()
        }
        #: every source by resource name
        self.sources: dict[str, DeviceSource] = {
            s.resource_name: s for kind in self.kinds.values() for s in kind.sources
        }
        self.servers: dict[str, ResourceServer] = {
            name: ResourceServer(name, self.device_plugin_dir, socket_name(name), source)
            for name, source in self.sources.items()
        }
        self._rescan_lock = threading.Lock()
        self._loops = [
            _Loop("dp-watch", watch_seconds, self._watch),
            _Loop("dp-health", config.health_seconds, self.refresh),
        ]
        for name, kind in self.kinds.items():
            if kind.rescan_seconds is not None:
                self._loops.append(_Loop(f"dp-{name}", kind.rescan_seconds, functools.partial(self._rescan, kind)))
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.socket_root.mkdir(parents=True, exist_ok=True)
        self.device_plugin_dir.mkdir(parents=True, exist_ok=True)
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
        for source in self.sources.values():
            source.cleanup()
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

    def _push(self, sources: Iterable[DeviceSource]) -> None:
        for source in sources:
            self.servers[source.resource_name].set_devices(source.poll())

    def _rescan(self, kind: DeviceKind) -> None:
        with self._rescan_lock:
            kind.rescan()
            self._push(kind.sources)

    def rescan(self) -> None:
        """Let every kind look for its devices now (vDPA: sysfs) and push what changed, health included."""
        for kind in self.kinds.values():
            self._rescan(kind)

    def refresh(self) -> None:
        """Poll every source's health now, without a rescan (the health loop; tests and benchmarks)."""
        self._push(self.sources.values())
