"""The node agent's configuration file (YAML or JSON), validated at start: unknown keys and bad values stop the agent
with a message naming the key, before anything is started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vhostplug import fsutil
from vhostplug.deviceinfo import DEFAULT_CONTAINER_ROOT, DEFAULT_DEVINFO_DIR


class ConfigError(Exception):
    """The configuration is unusable; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DataplaneConfig(_Strict):
    backend: str = "ovs"
    ovsdb: str = "unix:/var/run/openvswitch/db.sock"
    ovs_rundir: Path = Field(Path("/var/run/openvswitch"), alias="ovsRundir")


class OwnershipConfig(_Strict):
    user: str | int = "root"
    group: str | int = "root"
    dir_mode: str = Field("0770", alias="dirMode")
    socket_mode: str = Field("0660", alias="socketMode")

    @field_validator("dir_mode", "socket_mode")
    @classmethod
    def _octal(cls, v: str) -> str:
        try:
            mode = int(v, 8)
        except ValueError:
            raise ValueError(f"{v!r} is not an octal mode such as 0770") from None
        if not 0 <= mode <= 0o777:
            raise ValueError(f"{v!r} is outside 0000-0777")
        return v

    def to_ownership(self) -> fsutil.Ownership:
        return fsutil.Ownership(self.user, self.group, int(self.dir_mode, 8), int(self.socket_mode, 8))


class AgentConfig(_Strict):
    listen: Path = Path("/run/vhostplug/agent.sock")
    socket_root: Path = Field(Path("/var/run/vhostplug"), alias="socketRoot")
    container_socket_root: str = Field(DEFAULT_CONTAINER_ROOT, alias="containerSocketRoot")
    device_plugin_dir: Path = Field(Path("/var/lib/kubelet/device-plugins"), alias="devicePluginDir")
    devinfo_dir: Path = Field(DEFAULT_DEVINFO_DIR, alias="devinfoDir")
    dataplane: DataplaneConfig = Field(default_factory=DataplaneConfig)
    ownership: OwnershipConfig = Field(default_factory=OwnershipConfig)
    # None: no device plugin; {}: all defaults (see vhostplug.deviceplugin.config)
    device_plugin: dict[str, Any] | None = Field(None, alias="devicePlugin")
    metrics_port: int | None = Field(None, alias="metricsPort", ge=1, le=65535)
    relocate_seconds: float = Field(1.0, alias="relocateSeconds", gt=0, le=60)
    #: the agent's own records of what each ADD made (read by DEL and GC); root-only
    state_dir: Path = Field(Path("/var/lib/vhostplug/attachments"), alias="stateDir")


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{where}: {what}")
    return "; ".join(problems)


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
        raise ConfigError(f"invalid agent configuration: {_describe(exc)}") from None
