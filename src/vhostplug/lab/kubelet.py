"""A lab kubelet: kubelet's side of the device plugin protocol, for tests, benchmarks and the lab (no kubelet here).

It serves ``Registration`` on ``<folder>/kubelet.sock``, connects to each plugin that registers, follows its
ListAndWatch stream in a thread, allocates like kubelet (GetPreferredAllocation, then Allocate on healthy free
devices), simulates a kubelet restart (the folder's sockets are wiped), and applies an allocation's mounts and
device nodes inside a lab pod's mount namespace. Allocations made for a pod are served on kubelet's PodResources v1 API
(:mod:`vhostplug.lab.podresources.server`) once :meth:`LabKubelet.serve_pod_resources` is called.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from vhostplug.lab.podresources.server import Allocations, PodRef, PodResourcesServer

log = logging.getLogger(__name__)

KUBELET_SOCKET = "kubelet.sock"
API_VERSION = "v1beta1"


class LabKubeletError(RuntimeError):
    pass


@dataclass
class _Plugin:
    resource: str
    endpoint: str
    options: pb.DevicePluginOptions
    channel: grpc.Channel
    stub: pb_grpc.DevicePluginStub
    devices: list[pb.Device] = field(default_factory=list)
    updates: int = 0
    stream: grpc.Future | None = None
    allocated: set[str] = field(default_factory=set)


class _Registration(pb_grpc.RegistrationServicer):
    def __init__(self, kubelet: LabKubelet) -> None:
        self._kubelet = kubelet

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.Empty:
        if request.version != API_VERSION:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version!r}")
        if not request.endpoint or "/" in request.endpoint or not request.resource_name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "endpoint must be a socket base name, resource non-empty")
        self._kubelet._on_register(request)
        return pb.Empty()


class LabKubelet:
    """Plays kubelet's device-plugin protocol over real unix sockets in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._cond = threading.Condition()
        self._plugins: dict[str, _Plugin] = {}
        self._allocated: dict[str, set[str]] = {}  # survives plugin re-registration, as kubelet's checkpoint does
        self.registrations: list[tuple[float, str, str]] = []  # (monotonic time, resource, endpoint)
        self._server: grpc.Server | None = None
        #: (namespace, name) -> container -> resource -> device IDs (what PodResources reports)
        self._pods: dict[tuple[str, str], dict[str, dict[str, list[str]]]] = {}
        self._pod_resources: PodResourcesServer | None = None

    @property
    def socket_path(self) -> Path:
        return self.folder / KUBELET_SOCKET

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="lab-kubelet"))
        pb_grpc.add_RegistrationServicer_to_server(_Registration(self), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        os.chmod(self.socket_path, 0o600)
        self._server = server

    def serve_pod_resources(self, socket: Path) -> PodResourcesServer:
        """Serve kubelet's PodResources v1 API on ``socket`` (stopped with the kubelet)."""
        if self._pod_resources is None:
            self._pod_resources = PodResourcesServer(socket, self.allocations)
            self._pod_resources.start()
        return self._pod_resources

    def allocations(self) -> Allocations:
        """A snapshot of what was allocated to pods, and of the healthy devices of each registered resource."""
        with self._cond:
            pods = {
                k: {c: {r: list(ids) for r, ids in res.items()} for c, res in v.items()} for k, v in self._pods.items()
            }
            healthy = {r: [d.ID for d in p.devices if d.health == "Healthy"] for r, p in self._plugins.items()}
        return Allocations(pods=pods, allocatable=healthy)

    def stop(self) -> None:
        if self._pod_resources is not None:
            self._pod_resources.stop()
            self._pod_resources = None
        if self._server is not None:
            self._server.stop(grace=0.2).wait(2.0)
            self._server = None
        with self._cond:
            plugins = list(self._plugins.values())
            self._plugins.clear()
            self._cond.notify_all()
        for p in plugins:
            if p.stream is not None:
                p.stream.cancel()
            p.channel.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def restart(self) -> None:
        """Stop, wipe every socket in the folder as kubelet does at start, start again."""
        self.stop()
        for entry in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(entry).st_mode):
                    os.unlink(entry)
        self.start()

    def __enter__(self) -> LabKubelet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- registration and ListAndWatch -----------------------------------------------------------------------
    def _on_register(self, request: pb.RegisterRequest) -> None:
        channel = grpc.insecure_channel(f"unix:{self.folder / request.endpoint}")
        stub = pb_grpc.DevicePluginStub(channel)  # type: ignore[no-untyped-call]
        plugin = _Plugin(request.resource_name, request.endpoint, request.options, channel, stub)
        with self._cond:
            old = self._plugins.get(request.resource_name)
            self._plugins[request.resource_name] = plugin
            plugin.allocated = self._allocated.setdefault(request.resource_name, set())
            self.registrations.append((time.monotonic(), request.resource_name, request.endpoint))
            self._cond.notify_all()
        if old is not None:
            old.channel.close()
        threading.Thread(target=self._follow, args=(plugin,), name=f"law-{request.endpoint}", daemon=True).start()

    def _follow(self, plugin: _Plugin) -> None:
        try:
            stream = plugin.stub.ListAndWatch(pb.Empty())
            plugin.stream = stream
            for response in stream:
                with self._cond:
                    plugin.devices = list(response.devices)
                    plugin.updates += 1
                    self._cond.notify_all()
        except grpc.RpcError as exc:
            log.debug("ListAndWatch of %s ended: %s", plugin.resource, exc)
        except ValueError:  # channel closed under us
            pass

    def resources(self) -> list[str]:
        with self._cond:
            return sorted(self._plugins)

    def devices(self, resource: str) -> list[pb.Device]:
        with self._cond:
            p = self._plugins.get(resource)
            return list(p.devices) if p else []

    def updates(self, resource: str) -> int:
        with self._cond:
            p = self._plugins.get(resource)
            return p.updates if p else 0

    def wait_for(
        self, resource: str, predicate: Callable[[list[pb.Device]], bool], timeout: float = 10.0
    ) -> list[pb.Device]:
        """Wait until ``resource`` is registered and its latest device list satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                p = self._plugins.get(resource)
                if p is not None and p.updates and predicate(list(p.devices)):
                    return list(p.devices)
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(d.ID, d.health) for d in p.devices] if p else "not registered"
                    raise TimeoutError(f"{resource}: condition not met within {timeout} s; devices: {got}")
                self._cond.wait(min(left, 0.2))

    def wait_registered(self, resource: str, after: float = 0.0, timeout: float = 10.0) -> float:
        """Wait for a registration of ``resource`` later than ``after`` (monotonic); return its time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, res, _ in self.registrations:
                    if res == resource and t > after:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{resource} did not register within {timeout} s")
                self._cond.wait(min(left, 0.2))

    # ---- allocation ------------------------------------------------------------------------------------------
    def stub(self, resource: str) -> pb_grpc.DevicePluginStub:
        with self._cond:
            if resource not in self._plugins:
                raise LabKubeletError(f"{resource} is not registered")
            return self._plugins[resource].stub

    def free(self, resource: str) -> list[str]:
        with self._cond:
            p = self._plugins.get(resource)
            if p is None:
                raise LabKubeletError(f"{resource} is not registered")
            return [d.ID for d in p.devices if d.health == "Healthy" and d.ID not in p.allocated]

    def allocate(
        self, resource: str, n: int = 1, must_include: Sequence[str] = (), pod: PodRef | None = None
    ) -> tuple[list[str], pb.ContainerAllocateResponse]:
        """Pick ``n`` healthy free devices (asking the plugin's preference when offered) and Allocate them; with
        ``pod``, the devices are that pod's container's in PodResources."""
        with self._cond:
            plugin = self._plugins.get(resource)
        if plugin is None:
            raise LabKubeletError(f"{resource} is not registered")
        free = self.free(resource)
        if len(free) < n:
            raise LabKubeletError(f"{resource}: {n} devices wanted, {len(free)} healthy and free")
        ids = free[:n]
        if plugin.options.get_preferred_allocation_available:
            pref = plugin.stub.GetPreferredAllocation(
                pb.PreferredAllocationRequest(
                    container_requests=[
                        pb.ContainerPreferredAllocationRequest(
                            available_deviceIDs=free, must_include_deviceIDs=list(must_include), allocation_size=n
                        )
                    ]
                ),
                timeout=5,
            )
            ids = list(pref.container_responses[0].deviceIDs)
            if len(ids) != n or not set(ids) <= set(free):
                raise LabKubeletError(f"{resource}: bad preferred allocation {ids} from {free}")
        resp = plugin.stub.Allocate(
            pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=ids)]), timeout=10
        )
        with self._cond:
            plugin.allocated.update(ids)
            if pod is not None:
                per = self._pods.setdefault((pod.namespace, pod.name), {}).setdefault(pod.container, {})
                per.setdefault(resource, []).extend(ids)
        return ids, resp.container_responses[0]

    def release(self, resource: str, ids: Sequence[str]) -> None:
        with self._cond:
            self._allocated.setdefault(resource, set()).difference_update(ids)
            for key, containers in list(self._pods.items()):
                for res in containers.values():
                    if resource in res:
                        res[resource] = [i for i in res[resource] if i not in ids]
                if not any(i for res in containers.values() for i in res.values()):
                    del self._pods[key]

    def release_pod(self, namespace: str, name: str) -> list[str]:
        """The pod is gone: free every device it had; returns them."""
        with self._cond:
            containers = self._pods.pop((namespace, name), {})
            freed: list[str] = []
            for res in containers.values():
                for resource, ids in res.items():
                    self._allocated.setdefault(resource, set()).difference_update(ids)
                    freed.extend(ids)
        return freed


def _nsenter(pid: int, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--mount=/proc/{pid}/ns/mnt", "--", *cmd], capture_output=True, text=True, check=False
    )


def _must(pid: int, *cmd: str) -> None:
    r = _nsenter(pid, *cmd)
    if r.returncode != 0:
        raise LabKubeletError(f"in the mount namespace of {pid}: {' '.join(cmd)}: {r.stderr.strip() or r.stdout}")


def bind_into_pod(pid: int, host_path: str, container_path: str, read_only: bool = False) -> None:
    """Bind-mount ``host_path`` (a folder or a file) at ``container_path`` inside the mount namespace of ``pid``
    (a lab pod)."""
    if os.path.isdir(host_path):
        _must(pid, "mkdir", "-p", container_path)
    else:
        _must(pid, "mkdir", "-p", os.path.dirname(container_path))
        _must(pid, "touch", container_path)
    _must(pid, "mount", "--bind", host_path, container_path)
    if read_only:
        _must(pid, "mount", "-o", "remount,bind,ro", container_path)


def device_into_pod(pid: int, host_path: str, container_path: str) -> None:
    """A character device is made with ``mknod`` (same major/minor); anything else (a test's fake device) is bound."""
    st = os.stat(host_path)
    _must(pid, "mkdir", "-p", os.path.dirname(container_path))
    if stat.S_ISCHR(st.st_mode):
        _must(pid, "rm", "-f", container_path)
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        _must(pid, "mknod", "-m", "0660", container_path, "c", str(major), str(minor))
    else:
        _must(pid, "touch", container_path)
        _must(pid, "mount", "--bind", host_path, container_path)


def apply_to_pod(response: pb.ContainerAllocateResponse, pid: int) -> None:
    """Apply an allocation's mounts and device nodes inside the mount namespace of process ``pid`` (a lab pod).

    Host paths are read in that namespace too: lab pods share the host's file tree (only their mounts differ).
    """
    for m in response.mounts:
        bind_into_pod(pid, m.host_path, m.container_path, m.read_only)
    for d in response.devices:
        device_into_pod(pid, d.host_path, d.container_path)
