"""kubelet's PodResources v1 API (``v1.PodResourcesLister``: List, GetAllocatableResources, Get) served from what a
lab kubelet allocated, on a unix socket (kubelet's is ``/var/lib/kubelet/pod-resources/kubelet.sock``).

Multus asks ``List`` which device of its network's resource each pod got. The server reads a :class:`Allocations`
snapshot per call, so it never holds the lab kubelet's lock across gRPC.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from vhostplug.lab.podresources.v1 import api_pb2 as pb
from vhostplug.lab.podresources.v1 import api_pb2_grpc as pb_grpc

#: kubelet's socket, where real Multus (4.0.x: not configurable) looks for it
KUBELET_POD_RESOURCES = Path("/var/lib/kubelet/pod-resources/kubelet.sock")


@dataclass(frozen=True)
class PodRef:
    """The pod (and container) a device was allocated to."""

    namespace: str
    name: str
    container: str = "app"


@dataclass
class Allocations:
    """A snapshot: the devices of each pod's containers, and every healthy device of each resource."""

    #: (namespace, name) -> container -> resource -> device IDs, in allocation order
    pods: dict[tuple[str, str], dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    allocatable: dict[str, list[str]] = field(default_factory=dict)


def _pod_message(key: tuple[str, str], containers: dict[str, dict[str, list[str]]]) -> pb.PodResources:
    return pb.PodResources(
        namespace=key[0],
        name=key[1],
        containers=[
            pb.ContainerResources(
                name=cname,
                devices=[pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in sorted(res.items()) if ids],
            )
            for cname, res in sorted(containers.items())
        ],
    )


class _Lister(pb_grpc.PodResourcesListerServicer):
    def __init__(self, snapshot: Callable[[], Allocations]) -> None:
        self._snapshot = snapshot

    def List(self, request: pb.ListPodResourcesRequest, context: grpc.ServicerContext) -> pb.ListPodResourcesResponse:
        snap = self._snapshot()
        return pb.ListPodResourcesResponse(pod_resources=[_pod_message(key, c) for key, c in sorted(snap.pods.items())])

    def GetAllocatableResources(
        self, request: pb.AllocatableResourcesRequest, context: grpc.ServicerContext
    ) -> pb.AllocatableResourcesResponse:
        snap = self._snapshot()
        return pb.AllocatableResourcesResponse(
            devices=[
                pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in sorted(snap.allocatable.items())
            ]
        )

    def Get(self, request: pb.GetPodResourcesRequest, context: grpc.ServicerContext) -> pb.GetPodResourcesResponse:
        snap = self._snapshot()
        key = (request.pod_namespace, request.pod_name)
        if key not in snap.pods:  # kubelet: NotFound-like error for a pod it does not know
            context.abort(grpc.StatusCode.NOT_FOUND, f"pod {key[1]} in namespace {key[0]} not found")
        return pb.GetPodResourcesResponse(pod_resources=_pod_message(key, snap.pods[key]))


class PodResourcesServer:
    """The gRPC server on ``socket`` (0600, as kubelet's), answering from ``snapshot()``."""

    def __init__(self, socket: Path, snapshot: Callable[[], Allocations]) -> None:
        self.socket = Path(socket)
        self._snapshot = snapshot
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="lab-podresources"))
        pb_grpc.add_PodResourcesListerServicer_to_server(_Lister(self._snapshot), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"unix:{self.socket}")
        server.start()
        os.chmod(self.socket, 0o600)
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.2).wait(2.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)


def list_pod_devices(socket: Path, namespace: str, name: str, resource: str, timeout: float = 10.0) -> list[str]:
    """A client's view, as Multus reads it: the device IDs of ``resource`` allocated to a pod (all containers)."""
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = pb_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
        resp = stub.List(pb.ListPodResourcesRequest(), timeout=timeout)
    out: list[str] = []
    for pod in resp.pod_resources:
        if pod.namespace == namespace and pod.name == name:
            for c in pod.containers:
                for d in c.devices:
                    if d.resource_name == resource:
                        out.extend(d.device_ids)
    return out
