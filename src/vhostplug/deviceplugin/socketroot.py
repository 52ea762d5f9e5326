"""The socket-root device (resource ``vhostplug.io/dataplane``): one device that mounts the whole socket root, at the
same path, into the OVS-DPDK pod.

OVS is the vhost-user client of every ``dpdkvhostuserclient`` port and must see each device folder at its host path.
(The ``vhostplug.dataplane`` package is something else: the switch backends the CNI verbs drive.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from pydantic import field_validator

from vhostplug.configbase import SectionModel, check_resource_name
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.types import FixedKind, NodeContext, describe_ids, root_writable
from vhostplug.protocols import AllocateError, DeviceState

DEVICE_ID = "dataplane0"
ENV_SOCKET_ROOT = "VHOSTPLUG_SOCKET_ROOT"


class SocketRootConfig(SectionModel):
    """``vhostplug.io/dataplane``: one device that mounts the whole socket root into the OVS-DPDK pod."""

    enabled: bool = True
    resource_name: str = "vhostplug.io/dataplane"

    def resource_names(self) -> list[str]:
        return [self.resource_name] if self.enabled else []

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, v: str) -> str:
        return check_resource_name(v)


class SocketRootDevice:
    """The one device; every pod that gets it sees the whole socket root."""

    def __init__(self, config: SocketRootConfig, socket_root: Path) -> None:
        self.resource_name = config.resource_name
        self.socket_root = Path(socket_root)

    def poll(self) -> list[DeviceState]:
        ok, _ = root_writable(self.socket_root)
        return [DeviceState(DEVICE_ID, ok)]

    def check(self, ids: Sequence[str]) -> None:
        if list(ids) != [DEVICE_ID]:
            raise AllocateError(
                grpc.StatusCode.NOT_FOUND, f"only device {DEVICE_ID!r} exists, asked for {describe_ids(ids)}"
            )
        if not self.socket_root.is_dir():
            raise AllocateError(grpc.StatusCode.UNAVAILABLE, f"socket root {self.socket_root} is missing")

    def allocate(self, ids: Sequence[str]) -> pb.ContainerAllocateResponse:
        self.check(ids)
        resp = pb.ContainerAllocateResponse()
        resp.mounts.add(container_path=str(self.socket_root), host_path=str(self.socket_root), read_only=False)
        resp.envs[ENV_SOCKET_ROOT] = str(self.socket_root)
        return resp

    def cleanup(self) -> None:
        """Nothing is written outside the pod."""


def build(node: NodeContext, config: SocketRootConfig) -> FixedKind:
    return FixedKind((SocketRootDevice(config, node.socket_root),) if config.enabled else ())
