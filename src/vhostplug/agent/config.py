"""The node agent's configuration file (YAML or JSON), validated at start: unknown keys and bad values stop the agent
with a message naming the key, before anything is started. It holds the node policy (:class:`NodePolicy`): the socket
roots, bridges, IPAM plugins and kuryr mount points a network config may select, the devinfo root, folder ownership."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vhostplug import fsutil, ovsvhost, validation
from vhostplug.cni import policy
from vhostplug.cni.policy import NodePolicy
from vhostplug.dra.config import DraConfig
from vhostplug.validation import DEFAULT_CONTAINER_ROOT, DEFAULT_DEVINFO_DIR


class ConfigError(Exception):
    """The configuration is unusable; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DataplaneConfig(_Strict):
    backend: str = "ovs"
    ovsdb: str = "unix:/var/run/openvswitch/db.sock"
    ovs_rundir: Path = Field(Path("/var/run/openvswitch"), alias="ovsRundir")
    #: when a vhost-user port's link goes up or down (a VM's live migration stops it here, resumes it there), the
    #: bridge forgets the port's MAC and floods frames to it until it learns it again (vhostplug.dataplane.macforget)
    forget_mac_on_link_change: bool = Field(True, alias="forgetMacOnLinkChange")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        from vhostplug.dataplane.registry import BACKENDS  # the switch's client libraries: only when a config is read

        if v not in BACKENDS:
            raise ValueError(f"unknown dataplane backend {v!r}; known: {', '.join(sorted(BACKENDS))}")
        return v


class OwnershipConfig(_Strict):
    user: str | int = "root"
    group: str | int = "root"
    dir_mode: int = Field(0o770, alias="dirMode")
    socket_mode: int = Field(0o660, alias="socketMode")

    @field_validator("dir_mode", "socket_mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> int:
        return validation.octal_mode(v)

    def to_ownership(self) -> fsutil.Ownership:
        return fsutil.Ownership(self.user, self.group, self.dir_mode, self.socket_mode)


class BridgesConfig(_Strict):
    """The bridges a network may name (the first is the default), whether the agent may make a missing one, and
    the datapath type it makes them with (and expects of existing ones)."""

    allowed: list[str] = Field(default_factory=lambda: [policy.DEFAULT_BRIDGE], min_length=1)
    create: bool = True
    datapath_type: str = Field(ovsvhost.DATAPATH_NETDEV, alias="datapathType")

    @field_validator("allowed")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return [policy.check_bridge_name(b) for b in v]


class AgentConfig(_Strict):
    listen: Path = Path("/run/vhostplug/agent.sock")
    socket_root: Path = Field(validation.DEFAULT_SOCKET_ROOT, alias="socketRoot")
    #: further socket roots a network config may select with ``socketRoot`` (the default is ``socketRoot``)
    socket_roots: list[Path] = Field(default_factory=list, alias="socketRoots")
    container_socket_root: str = Field(DEFAULT_CONTAINER_ROOT, alias="containerSocketRoot")
    #: further container socket roots a network config may select with ``containerSocketRoot``
    container_socket_roots: list[str] = Field(default_factory=list, alias="containerSocketRoots")
    bridges: BridgesConfig = Field(default_factory=BridgesConfig)
    ipam_plugins: list[str] = Field(default_factory=lambda: list(policy.DEFAULT_IPAM_PLUGINS), alias="ipamPlugins")
    kuryr_mount_points: list[str] = Field(
        default_factory=lambda: list(policy.DEFAULT_KURYR_MOUNT_POINTS), alias="kuryrMountPoints"
    )
    device_plugin_dir: Path = Field(Path("/var/lib/kubelet/device-plugins"), alias="devicePluginDir")
    devinfo_dir: Path = Field(DEFAULT_DEVINFO_DIR, alias="devinfoDir")
    dataplane: DataplaneConfig = Field(default_factory=DataplaneConfig)
    ownership: OwnershipConfig = Field(default_factory=OwnershipConfig)
    # None: no device plugin; {}: all defaults (see vhostplug.deviceplugin.config)
    device_plugin: dict[str, Any] | None = Field(None, alias="devicePlugin")
    #: /metrics, /healthz and /readyz (see vhostplug.agent.http); off when unset
    metrics_port: int | None = Field(None, alias="metricsPort", ge=1, le=65535)
    metrics_address: str = Field("127.0.0.1", alias="metricsAddress", min_length=1)
    relocate_seconds: float = Field(1.0, alias="relocateSeconds", gt=0, le=60)
    #: the agent's own records of what each ADD made (read by DEL and GC); root-only
    state_dir: Path = Field(Path("/var/lib/vhostplug/attachments"), alias="stateDir")
    #: the DRA kubelet plugin (off by default; see vhostplug.dra.config and docs/dra.md)
    dra: DraConfig = Field(default_factory=DraConfig)

    @field_validator("socket_roots")
    @classmethod
    def _socket_roots(cls, v: list[Path]) -> list[Path]:
        return [Path(validation.absolute_path(str(p), "socketRoots")) for p in v]

    @field_validator("container_socket_roots", "kuryr_mount_points")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        return [validation.absolute_path(p, "path") for p in v]

    @field_validator("ipam_plugins")
    @classmethod
    def _ipam(cls, v: list[str]) -> list[str]:
        for name in v:
            try:
                fsutil.check_component(name, "IPAM plugin name")
            except fsutil.UnsafePathError as exc:
                raise ValueError(str(exc)) from None
        return v

    def to_policy(self) -> NodePolicy:
        resource = policy.DEFAULT_DEVICE_RESOURCE
        vhostuser = (self.device_plugin or {}).get("vhostuser")
        if isinstance(vhostuser, dict) and isinstance(vhostuser.get("resourceName"), str):
            resource = vhostuser["resourceName"]
        return NodePolicy(
            socket_roots=tuple(dict.fromkeys([self.socket_root, *self.socket_roots])),
            container_socket_roots=tuple(dict.fromkeys([self.container_socket_root, *self.container_socket_roots])),
            devinfo_root=self.devinfo_dir,
            bridges=tuple(self.bridges.allowed),
            may_create_bridges=self.bridges.create,
            datapath_type=self.bridges.datapath_type,
            ipam_plugins=tuple(self.ipam_plugins),
            kuryr_mount_points=tuple(self.kuryr_mount_points),
            device_resource=resource,
        )


def load(path: Path | None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
        try:
            loaded = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"configuration {path} is not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: {exc}"
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"configuration {path} must be a mapping at the top level")
        data = loaded
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "ovsdb":
            data.setdefault("dataplane", {})["ovsdb"] = value
        else:
            data[key] = value
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid agent configuration: {validation.describe(exc)}") from None
