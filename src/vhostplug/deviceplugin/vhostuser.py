"""``vhostplug.io/vhostuser``: fixed short device IDs, each one a host folder for one vhost-user socket.

Allocate empties and prepares ``<socket_root>/<id>/`` (never following a symlink), mounts it at the well-known
container folder, names it in env vars and writes the dp device-info file (vhost-user, mode ``server``). Health is
shared by all devices: the dataplane probe (OVSDB reachable) and a real write in the socket root.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from pydantic import Field, field_validator

from vhostplug import deviceinfo, fsutil, validation
from vhostplug.configbase import SectionModel, check_resource_name
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.types import FixedKind, HealthProbe, NodeContext, describe_ids, root_writable
from vhostplug.protocols import AllocateError, DeviceState

log = logging.getLogger(__name__)

ENV_DEVICE = "VHOSTPLUG_DEVICE_{}"
ENV_SOCKET_DIR = "VHOSTPLUG_SOCKET_DIR_{}"
ENV_SOCKET = "VHOSTPLUG_SOCKET_{}"
ENV_DEVICES = "VHOSTPLUG_DEVICES"


_ID_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")


class VhostUserConfig(SectionModel):
    """``vhostplug.io/vhostuser``: one device = one short host folder for one vhost-user socket."""

    count: int = Field(default=64, ge=1, le=1024)
    resource_name: str = "vhostplug.io/vhostuser"
    id_prefix: str = "vu"
    owner: str | int = "root"
    group: str | int = "root"
    mode: int = 0o770

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, v: str) -> str:
        return check_resource_name(v)

    @field_validator("id_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _ID_PREFIX_RE.match(v):
            raise ValueError(f"{v!r}: use 1-16 lower-case letters, digits or '-', starting with a letter")
        return v

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> int:
        return validation.octal_mode(v)

    @field_validator("owner", "group")
    @classmethod
    def _principal(cls, v: str | int) -> str | int:
        if isinstance(v, int) and v < 0:
            raise ValueError("ids are not negative")
        if isinstance(v, str) and not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}\$?", v):
            raise ValueError(f"{v!r} is not a user or group name")
        return v

    def resource_names(self) -> list[str]:
        return [self.resource_name]

    def ownership(self) -> fsutil.Ownership:
        return fsutil.Ownership(user=self.owner, group=self.group, dir_mode=self.mode)

    def device_ids(self) -> list[str]:
        width = max(2, len(str(self.count - 1)))
        return [f"{self.id_prefix}{i:0{width}d}" for i in range(self.count)]


class VhostUserDevices:
    """The vhost-user socket-folder devices of one node."""

    def __init__(
        self,
        config: VhostUserConfig,
        socket_root: Path,
        devinfo_dir: Path,
        container_root: str,
        health_probe: HealthProbe,
    ) -> None:
        self.config = config
        self.resource_name = config.resource_name
        self.socket_root = Path(socket_root)
        self.devinfo_dir = Path(devinfo_dir)
        self.container_root = container_root
        self.health_probe = health_probe
        self.ids = config.device_ids()
        self._known = set(self.ids)
        self.last_health: tuple[bool, str] = (True, "")

    def health(self) -> tuple[bool, str]:
        try:
            ok, detail = self.health_probe()
        except Exception as exc:
            ok, detail = False, f"health probe failed: {type(exc).__name__}: {exc}"
        if ok:
            ok, detail = root_writable(self.socket_root)
        if (ok, detail) != self.last_health:
            log.log(logging.INFO if ok else logging.WARNING, "%s: healthy=%s %s", self.resource_name, ok, detail)
        self.last_health = (ok, detail)
        return ok, detail

    def poll(self) -> list[DeviceState]:
        ok, _ = self.health()
        return [DeviceState(i, ok) for i in self.ids]

    def host_dir(self, device_id: str) -> Path:
        return self.socket_root / device_id

    def container_dir(self, device_id: str) -> str:
        return deviceinfo.container_device_dir(device_id, self.container_root)

    def container_socket(self, device_id: str) -> str:
        return f"{self.container_dir(device_id)}/{deviceinfo.DEVICE_SOCKET_NAME}"

    def check(self, ids: Sequence[str]) -> None:
        """Raise :class:`AllocateError` when ``ids`` cannot be allocated; touches nothing."""
        if not ids:
            raise AllocateError(grpc.StatusCode.INVALID_ARGUMENT, "no device IDs in the request")
        unknown = [i for i in ids if i not in self._known]
        if unknown:
            raise AllocateError(grpc.StatusCode.NOT_FOUND, f"unknown device IDs {describe_ids(unknown)}")
        if len(set(ids)) != len(ids):
            raise AllocateError(grpc.StatusCode.INVALID_ARGUMENT, f"device IDs repeated in {describe_ids(ids)}")
        try:
            root = os.lstat(self.socket_root)
        except OSError as exc:
            raise AllocateError(grpc.StatusCode.UNAVAILABLE, f"socket root {self.socket_root}: {exc.strerror}") from exc
        if not stat.S_ISDIR(root.st_mode):
            raise AllocateError(grpc.StatusCode.FAILED_PRECONDITION, f"socket root {self.socket_root} is not a folder")
        for i in ids:
            try:
                st = os.lstat(self.host_dir(i))
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise AllocateError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{self.host_dir(i)} is a symlink; refusing to follow it (remove it to free device {i})",
                )
            if not stat.S_ISDIR(st.st_mode):
                raise AllocateError(grpc.StatusCode.FAILED_PRECONDITION, f"{self.host_dir(i)} is not a folder")

    def allocate(self, ids: Sequence[str]) -> pb.ContainerAllocateResponse:
        """Prepare every folder first (all checked before any is touched), then answer."""
        self.check(ids)
        own = self.config.ownership()
        for i in ids:
            path = self.host_dir(i)
            try:
                fsutil.ensure_dir(path)
                fsutil.empty_dir(path)
                fsutil.ensure_dir(path, own)
            except fsutil.UnsafePathError as exc:  # raced with a planted link after the pre-check
                raise AllocateError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
            except (KeyError, OSError) as exc:
                code = grpc.StatusCode.FAILED_PRECONDITION
                if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOSPC):
                    code = grpc.StatusCode.UNAVAILABLE
                raise AllocateError(code, f"cannot prepare {path}: {exc}") from exc
        resp = pb.ContainerAllocateResponse()
        for n, i in enumerate(ids):
            cdir, csock = self.container_dir(i), self.container_socket(i)
            resp.mounts.add(container_path=cdir, host_path=str(self.host_dir(i)), read_only=False)
            resp.envs[ENV_DEVICE.format(n)] = i
            resp.envs[ENV_SOCKET_DIR.format(n)] = cdir
            resp.envs[ENV_SOCKET.format(n)] = csock
            deviceinfo.write_dp(self.devinfo_dir, self.resource_name, i, deviceinfo.vhost_user("server", csock))
        resp.envs[ENV_DEVICES] = ",".join(ids)
        return resp

    def cleanup(self) -> None:
        """Remove our dp device-info files (the folders stay: pods may still use their sockets)."""
        for i in self.ids:
            deviceinfo.remove_dp(self.devinfo_dir, self.resource_name, i)


def build(node: NodeContext, config: VhostUserConfig) -> FixedKind:
    return FixedKind(
        (VhostUserDevices(config, node.socket_root, node.devinfo_dir, node.container_root, node.health_probe),)
    )
