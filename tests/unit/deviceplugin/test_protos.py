"""The committed device plugin stubs match the .proto, and the wire numbers are kubelet's."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc


def test_generated_stubs_are_fresh() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_field_numbers_match_kubelet() -> None:
    def num(msg: type, field: str) -> int:
        return int(msg.DESCRIPTOR.fields_by_name[field].number)  # type: ignore[attr-defined]

    assert pb.DESCRIPTOR.package == "v1beta1"
    assert num(pb.RegisterRequest, "options") == 4
    assert num(pb.RegisterRequest, "resource_name") == 3
    assert num(pb.DevicePluginOptions, "get_preferred_allocation_available") == 2
    assert num(pb.Device, "topology") == 3
    assert num(pb.NUMANode, "ID") == 1
    assert num(pb.ContainerPreferredAllocationRequest, "allocation_size") == 3
    assert num(pb.ContainerAllocateResponse, "cdi_devices") == 5
    assert num(pb.ContainerAllocateResponse, "annotations") == 4
    assert num(pb.DeviceSpec, "permissions") == 3
    assert num(pb.Mount, "read_only") == 3
    services = pb.DESCRIPTOR.services_by_name
    assert set(services) == {"Registration", "DevicePlugin"}
    assert [m.name for m in services["DevicePlugin"].methods] == [
        "GetDevicePluginOptions",
        "ListAndWatch",
        "GetPreferredAllocation",
        "Allocate",
        "PreStartContainer",
    ]
    assert services["DevicePlugin"].methods_by_name["ListAndWatch"].server_streaming
    assert hasattr(pb_grpc, "RegistrationStub")
