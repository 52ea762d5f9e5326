"""One kubelet device plugin gRPC server per resource: serving, registration, ListAndWatch, preferred allocation.

A :class:`ResourceServer` owns one unix socket (mode 0600) in the device-plugins folder and knows nothing about
what its devices are: a backend gives it the device list (``set_devices``) and an ``allocate`` callable. The
manager's watcher calls :meth:`ResourceServer.check` every second: when kubelet wiped our socket (a kubelet
restart) the server serves again on a new socket and registers again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"


class AllocateError(Exception):
    """Allocate cannot be served; becomes a gRPC status with this code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DeviceState:
    """One device as kubelet sees it."""

    id: str
    healthy: bool
    numa: int | None = None

    def to_pb(self) -> pb.Device:
        dev = pb.Device(ID=self.id, health=HEALTHY if self.healthy else UNHEALTHY)
        if self.numa is not None:
            dev.topology.nodes.add(ID=self.numa)
        return dev


AllocateFn = Callable[[Sequence[str]], pb.ContainerAllocateResponse]


def preferred(
    available: Sequence[str], must_include: Sequence[str], size: int, numa: dict[str, int | None]
) -> list[str]:
    """Pick ``size`` devices: ``must_include`` first, then devices on the same NUMA node(s), then any (given order).

    Without ``must_include`` and with topology known, the NUMA node holding the most available devices is preferred.
    """
    chosen = list(dict.fromkeys(must_include))[:size]
    rest = [d for d in available if d not in chosen]
    nodes = {numa.get(d) for d in chosen} - {None}
    if not nodes:
        counts: dict[int, int] = {}
        for d in rest:
            node = numa.get(d)
            if node is not None:
                counts[node] = counts.get(node, 0) + 1
        if counts:
            nodes = {max(sorted(counts), key=lambda n: counts[n])}
    if nodes:
        rest.sort(key=lambda d: numa.get(d) not in nodes)  # stable: keeps first-free order within each group
    return chosen + rest[: max(0, size - len(chosen))]


class _Servicer(pb_grpc.DevicePluginServicer):
    def __init__(self, owner: ResourceServer) -> None:
        self._owner = owner

    def GetDevicePluginOptions(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)

    def ListAndWatch(self, request: pb.Empty, context: grpc.ServicerContext) -> Iterator[pb.ListAndWatchResponse]:
        return self._owner.watch_devices(context)

    def GetPreferredAllocation(
        self, request: pb.PreferredAllocationRequest, context: grpc.ServicerContext
    ) -> pb.PreferredAllocationResponse:
        numa = {d.id: d.numa for d in self._owner.devices()}
        out = pb.PreferredAllocationResponse()
        for req in request.container_requests:
            ids = preferred(list(req.available_deviceIDs), list(req.must_include_deviceIDs), req.allocation_size, numa)
            out.container_responses.add(deviceIDs=ids)
        return out

    def Allocate(self, request: pb.AllocateRequest, context: grpc.ServicerContext) -> pb.AllocateResponse:
        out = pb.AllocateResponse()
        try:
            for req in request.container_requests:
                out.container_responses.append(self._owner.allocate(list(req.devices_ids)))
        except AllocateError as exc:
            log.warning("%s: Allocate %s refused: %s", self._owner.resource_name, list(request.container_requests), exc)
            context.abort(exc.code, f"{self._owner.resource_name}: {exc}")
        except Exception as exc:  # a clear status instead of grpc's "Exception calling application"
            log.exception("%s: Allocate failed", self._owner.resource_name)
            context.abort(grpc.StatusCode.INTERNAL, f"{self._owner.resource_name}: {type(exc).__name__}: {exc}")
        return out

    def PreStartContainer(
        self, request: pb.PreStartContainerRequest, context: grpc.ServicerContext
    ) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()


class ResourceServer:
    """Serve one resource on ``<device_plugin_dir>/<socket_name>`` and register it with kubelet."""

    def __init__(
        self,
        resource_name: str,
        device_plugin_dir: Path,
        socket_name: str,
        allocate: AllocateFn,
        register_timeout: float = 5.0,
    ) -> None:
        self.resource_name = resource_name
        self.device_plugin_dir = Path(device_plugin_dir)
        self.socket_name = socket_name
        self.allocate = allocate
        self.register_timeout = register_timeout
        self._cond = threading.Condition()
        self._devices: tuple[DeviceState, ...] = ()
        self._version = 0
        self._server: grpc.Server | None = None
        self._serving = threading.Event()  # cleared while a server is being replaced/stopped: ends streams
        self._socket_ino: int | None = None
        self.registered = False
        self.registrations = 0

    @property
    def socket_path(self) -> Path:
        return self.device_plugin_dir / self.socket_name

    # ---- device list ------------------------------------------------------------------------------------------
    def devices(self) -> tuple[DeviceState, ...]:
        with self._cond:
            return self._devices

    def set_devices(self, devices: Sequence[DeviceState]) -> bool:
        """Replace the device list; wake every ListAndWatch stream when it changed. True when it changed."""
        new = tuple(devices)
        with self._cond:
            if new == self._devices:
                return False
            self._devices = new
            self._version += 1
            self._cond.notify_all()
        return True

    def watch_devices(self, context: grpc.ServicerContext) -> Iterator[pb.ListAndWatchResponse]:
        seen = -1
        while self._serving.is_set() and context.is_active():
            with self._cond:
                if self._version == seen:
                    self._cond.wait(timeout=0.5)
                    continue
                seen = self._version
                devices = self._devices
            yield pb.ListAndWatchResponse(devices=[d.to_pb() for d in devices])

    # ---- serving and registering ------------------------------------------------------------------------------
    def start(self) -> None:
        self._serve()
        self.register()

    def _serve(self) -> None:
        self._remove_own_socket()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix=self.socket_name))
        pb_grpc.add_DevicePluginServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        os.chmod(self.socket_path, 0o600, follow_symlinks=False)
        self._socket_ino = os.lstat(self.socket_path).st_ino
        self._server = server
        self._serving.set()
        log.info("%s: serving on %s", self.resource_name, self.socket_path)

    def register(self) -> bool:
        """Register with kubelet; False (and logged) when kubelet is not there yet: :meth:`check` retries."""
        kubelet = self.device_plugin_dir / KUBELET_SOCKET
        request = pb.RegisterRequest(
            version=API_VERSION,
            endpoint=self.socket_name,
            resource_name=self.resource_name,
            options=pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True),
        )
        try:
            with grpc.insecure_channel(f"unix:{kubelet}") as channel:
                pb_grpc.RegistrationStub(channel).Register(request, timeout=self.register_timeout)  # type: ignore[no-untyped-call]
        except grpc.RpcError as exc:
            self.registered = False
            log.warning("%s: cannot register with kubelet at %s: %s", self.resource_name, kubelet, exc)
            return False
        self.registered = True
        self.registrations += 1
        log.info("%s: registered with kubelet as %s", self.resource_name, self.socket_name)
        return True

    def socket_intact(self) -> bool:
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return False
        return stat.S_ISSOCK(st.st_mode) and st.st_ino == self._socket_ino

    def check(self) -> None:
        """Called every second: serve and register again when our socket vanished, retry a failed Register."""
        if self._server is None:
            return
        if not self.socket_intact():
            log.warning(
                "%s: socket %s vanished (kubelet restart?): serving again", self.resource_name, self.socket_path
            )
            self._stop_server()
            self._serve()
            self.register()
        elif not self.registered:
            self.register()

    def _stop_server(self) -> None:
        self._serving.clear()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop(grace=0.5).wait(2.0)
            self._server = None

    def stop(self) -> None:
        self._stop_server()
        self._remove_own_socket()
        self.registered = False

    def _remove_own_socket(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.socket_path)
            if stat.S_ISSOCK(st.st_mode):
                os.unlink(self.socket_path)
