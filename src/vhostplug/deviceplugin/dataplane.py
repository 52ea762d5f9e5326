"""``vhostplug.io/dataplane``: one device that mounts the whole socket root, at the same path, into the OVS-DPDK pod.

OVS is the vhost-user client of every ``dpdkvhostuserclient`` port and must see each device folder at its host path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.config import DataplaneConfig
from vhostplug.deviceplugin.server import AllocateError, DeviceState
from vhostplug.deviceplugin.vhostuser import root_writable

DEVICE_ID = "dataplane0"
ENV_SOCKET_ROOT = "VHOSTPLUG_SOCKET_ROOT"


class DataplaneDevice:
    def __init__(self, config: DataplaneConfig, socket_root: Path) -> None:
        self.resource_name = config.resource_name
        self.socket_root = Path(socket_root)

    def poll(self) -> list[DeviceState]:
        ok, _ = root_writable(self.socket_root)
        return [DeviceState(DEVICE_ID, ok)]

    def allocate(self, ids: Sequence[str]) -> pb.ContainerAllocateResponse:
        if list(ids) != [DEVICE_ID]:
            raise AllocateError(grpc.StatusCode.NOT_FOUND, f"only device {DEVICE_ID!r} exists, asked for {list(ids)}")
        if not self.socket_root.is_dir():
            raise AllocateError(grpc.StatusCode.UNAVAILABLE, f"socket root {self.socket_root} is missing")
        resp = pb.ContainerAllocateResponse()
        resp.mounts.add(container_path=str(self.socket_root), host_path=str(self.socket_root), read_only=False)
        resp.envs[ENV_SOCKET_ROOT] = str(self.socket_root)
        return resp
