"""One kubelet device plugin gRPC server per resource: serving, registration, ListAndWatch, preferred allocation.

A :class:`ResourceServer` owns one unix socket (mode 0600) in the device-plugins folder and knows nothing about
what its devices are: the manager gives it the device list (``set_devices``) and its device source (a
``protocols.DeviceSource``) checks and allocates. The manager's watcher calls :meth:`ResourceServer.check` every
second: when kubelet wiped our socket (a kubelet restart) the server serves again on a new socket and registers
again; while kubelet cannot be reached, Register is retried with a growing pause and logged once per state.

ListAndWatch streams hold a worker thread each: at most :data:`MAX_STREAMS` are served at once (more are refused
with RESOURCE_EXHAUSTED), so unary calls (Allocate, GetDevicePluginOptions) always find a free worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from vhostplug.deviceplugin.types import describe_ids
from vhostplug.protocols import AllocateError, DeviceState

if TYPE_CHECKING:
    from vhostplug.protocols import DeviceSource

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
#: ListAndWatch streams served at once (kubelet keeps one; a restarting kubelet briefly two)
MAX_STREAMS = 4
#: gRPC worker threads: the streams plus this many for unary calls
UNARY_WORKERS = 4
#: Register retries after a failure: first pause, doubled each time up to the last
REGISTER_BACKOFF = (1.0, 30.0)


def device_pb(device: DeviceState) -> pb.Device:
    """One device as ListAndWatch sends it."""
    dev = pb.Device(ID=device.id, health=HEALTHY if device.healthy else UNHEALTHY)
    if device.numa is not None:
        dev.topology.nodes.add(ID=device.numa)
    return dev


def preferred(
    available: Sequence[str], must_include: Sequence[str], size: int, numa: dict[str, int | None]
) -> list[str]:
    """Pick ``size`` devices: ``must_include`` first, then devices on the same NUMA node(s), then any (given order).

    Without ``must_include`` and with topology known, the NUMA node holding the most available devices is preferred.
    """
    size = max(0, size)  # allocation_size is an int32: a negative one asks for nothing
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
        owner = self._owner
        out = pb.AllocateResponse()
        try:
            out.container_responses.extend(owner.allocate([list(r.devices_ids) for r in request.container_requests]))
        except AllocateError as exc:
            log.warning("%s: Allocate refused: %s", owner.resource_name, exc)
            context.abort(exc.code, f"{owner.resource_name}: {exc}")
        except Exception as exc:  # a clear status instead of grpc's "Exception calling application"
            log.exception("%s: Allocate failed", owner.resource_name)
            context.abort(grpc.StatusCode.INTERNAL, f"{owner.resource_name}: {type(exc).__name__}: {exc}"[:1024])
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
        source: DeviceSource,
        register_timeout: float = 5.0,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.resource_name = resource_name
        self.device_plugin_dir = Path(device_plugin_dir)
        self.socket_name = socket_name
        self.source = source
        self.register_timeout = register_timeout
        self.max_streams = max_streams
        self._streams = 0
        self._register_error: str | None = None  # what the last failed Register said (logged once per change)
        self._register_pause = REGISTER_BACKOFF[0]
        self._register_next = 0.0  # monotonic time of the next retry
        self._kubelet_seen: tuple[int, int] | None = None  # kubelet socket identity at the last failed attempt
        self.register_attempts = 0
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
        with self._cond:
            refused = self._streams >= self.max_streams
            if not refused:
                self._streams += 1
        if refused:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.resource_name}: at most {self.max_streams} ListAndWatch streams are served at once",
            )
        try:
            seen = -1
            while self._serving.is_set() and context.is_active():
                with self._cond:
                    if self._version == seen:
                        self._cond.wait(timeout=0.5)
                        continue
                    seen = self._version
                    devices = self._devices
                yield pb.ListAndWatchResponse(devices=[device_pb(d) for d in devices])
        finally:
            with self._cond:
                self._streams -= 1

    # ---- allocation -------------------------------------------------------------------------------------------
    def allocate(self, requests: Sequence[Sequence[str]]) -> list[pb.ContainerAllocateResponse]:
        """Every container's IDs are checked before any device is touched: one bad request changes nothing."""
        if not requests:
            raise AllocateError(grpc.StatusCode.INVALID_ARGUMENT, "no container requests")
        seen: set[str] = set()
        repeated: list[str] = []
        for ids in requests:
            repeated += [i for i in ids if i in seen]
            seen.update(ids)
        for ids in requests:
            self.source.check(ids)
        if repeated:
            raise AllocateError(
                grpc.StatusCode.INVALID_ARGUMENT, f"device IDs asked for more than once: {describe_ids(repeated)}"
            )
        return [self.source.allocate(ids) for ids in requests]

    # ---- serving and registering ------------------------------------------------------------------------------
    def start(self) -> None:
        self._serve()
        self.register()

    def _serve(self) -> None:
        self._remove_own_socket()
        workers = futures.ThreadPoolExecutor(self.max_streams + UNARY_WORKERS, thread_name_prefix=self.socket_name)
        server = grpc.server(workers)
        pb_grpc.add_DevicePluginServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        os.chmod(self.socket_path, 0o600, follow_symlinks=False)
        self._socket_ino = os.lstat(self.socket_path).st_ino
        self._server = server
        self._serving.set()
        log.info("%s: serving on %s", self.resource_name, self.socket_path)

    def register(self) -> bool:
        """Register with kubelet; False when kubelet is not there yet (:meth:`check` retries, pausing longer each
        time up to 30 s, at once when kubelet's socket is new). A failure is logged when it differs from the last."""
        kubelet = self.device_plugin_dir / KUBELET_SOCKET
        request = pb.RegisterRequest(
            version=API_VERSION,
            endpoint=self.socket_name,
            resource_name=self.resource_name,
            options=pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True),
        )
        self.register_attempts += 1
        # the kubelet this attempt can reach, taken before it: a kubelet whose socket appears while the attempt
        # fails is a new one, tried at once (taken after, it was waited out for the whole pause)
        seen = self._kubelet_identity()
        try:
            with grpc.insecure_channel(f"unix:{kubelet}") as channel:
                pb_grpc.RegistrationStub(channel).Register(request, timeout=self.register_timeout)  # type: ignore[no-untyped-call]
        except grpc.RpcError as exc:
            self.registered = False
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = (exc.details() if isinstance(exc, grpc.Call) else None) or ""
            error = f"{code.name if code else 'error'}: {details[:200]}"
            if not os.path.exists(kubelet):
                error = f"{kubelet} does not exist (kubelet not running?)"
            if error != self._register_error:
                log.warning(
                    "%s: cannot register with kubelet at %s: %s; retrying (said once until this changes)",
                    self.resource_name,
                    kubelet,
                    error,
                )
            self._register_error = error
            self._kubelet_seen = seen
            self._register_next = time.monotonic() + self._register_pause
            self._register_pause = min(self._register_pause * 2, REGISTER_BACKOFF[1])
            return False
        self.registered = True
        self.registrations += 1
        self._register_error = None
        self._register_pause = REGISTER_BACKOFF[0]
        log.info("%s: registered with kubelet as %s", self.resource_name, self.socket_name)
        return True

    def _kubelet_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.device_plugin_dir / KUBELET_SOCKET)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _register_due(self) -> bool:
        return time.monotonic() >= self._register_next or self._kubelet_identity() != self._kubelet_seen

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
            self._register_pause = REGISTER_BACKOFF[0]
            self.register()
        elif not self.registered and self._register_due():
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
