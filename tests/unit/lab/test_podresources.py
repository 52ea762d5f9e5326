"""kubelet's PodResources v1 API as the lab serves it: List, GetAllocatableResources and Get over real gRPC on a unix
socket (0600), answering from the allocations snapshot; the committed stubs carry kubelet's wire names."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from vhostplug.lab.podresources.server import Allocations, PodResourcesServer, list_pod_devices
from vhostplug.lab.podresources.v1 import api_pb2 as pb
from vhostplug.lab.podresources.v1 import api_pb2_grpc as pb_grpc

SNAP = Allocations(
    pods={
        ("default", "a"): {"app": {"vhostplug.io/vhostuser": ["vu01", "vu02"]}, "side": {"x.io/y": ["y1"]}},
        ("other", "b"): {"app": {"vhostplug.io/vhostuser": ["vu03"]}},
    },
    allocatable={"vhostplug.io/vhostuser": ["vu01", "vu02", "vu03", "vu04"]},
)


@pytest.fixture
def served(short_dir: Path) -> Iterator[tuple[Path, pb_grpc.PodResourcesListerStub]]:
    server = PodResourcesServer(short_dir / "pr" / "kubelet.sock", lambda: SNAP)
    server.start()
    channel = grpc.insecure_channel(f"unix:{server.socket}")
    try:
        yield server.socket, pb_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
    finally:
        channel.close()
        server.stop()
    assert not server.socket.exists()


def test_wire_names_are_kubelets() -> None:
    assert pb.DESCRIPTOR.package == "v1"
    assert pb.DESCRIPTOR.services_by_name["PodResourcesLister"].full_name == "v1.PodResourcesLister"
    assert pb.ContainerDevices.DESCRIPTOR.fields_by_name["device_ids"].number == 2
    assert pb.GetPodResourcesRequest.DESCRIPTOR.fields_by_name["pod_namespace"].number == 2


def test_list_allocatable_and_get(served: tuple[Path, pb_grpc.PodResourcesListerStub]) -> None:
    socket, stub = served
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    pods = stub.List(pb.ListPodResourcesRequest(), timeout=5).pod_resources
    assert [(p.namespace, p.name) for p in pods] == [("default", "a"), ("other", "b")]
    app = next(c for c in pods[0].containers if c.name == "app")
    assert [(d.resource_name, list(d.device_ids)) for d in app.devices] == [
        ("vhostplug.io/vhostuser", ["vu01", "vu02"])
    ]
    alloc = stub.GetAllocatableResources(pb.AllocatableResourcesRequest(), timeout=5)
    assert [list(d.device_ids) for d in alloc.devices] == [["vu01", "vu02", "vu03", "vu04"]]
    got = stub.Get(pb.GetPodResourcesRequest(pod_name="b", pod_namespace="other"), timeout=5).pod_resources
    assert got.name == "b" and list(got.containers[0].devices[0].device_ids) == ["vu03"]
    with pytest.raises(grpc.RpcError) as err:
        stub.Get(pb.GetPodResourcesRequest(pod_name="nope", pod_namespace="default"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert list_pod_devices(socket, "default", "a", "vhostplug.io/vhostuser") == ["vu01", "vu02"]
