"""The device plugin's configuration: pydantic models with camelCase keys, strict validation, and ``load_config``.

Example (YAML or JSON, the same keys)::

    healthSeconds: 5
    vhostuser: {count: 64, resourceName: vhostplug.io/vhostuser, owner: root, group: hugetlbfs, mode: "0770"}
    dataplane: {enabled: true, resourceName: vhostplug.io/dataplane}
    vdpa:
      sysfsRoot: /sys
      devRoot: /dev
      rescanSeconds: 10
      pools:
        - resourceName: vhostplug.io/vdpa_mlx
          selectors: {vendors: ["15b3"], vdpaType: vhost, pfNames: [ens1f0]}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from vhostplug import fsutil

#: ``<domain>/<name>``: a DNS subdomain, then a qualified name of at most 63 characters (extended resource names).
_RESOURCE_RE = re.compile(
    r"^(?=.{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
    r"(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
#: a PCI address as sysfs names it (``0000:65:00.2``): the one definition, also used by vDPA discovery
PCI_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_HEX_ID_RE = re.compile(r"^[0-9a-f]{4}$")
_ID_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")


class ConfigError(ValueError):
    """The device plugin configuration is invalid; the message names each bad key."""


def _check_resource_name(value: str) -> str:
    if not _RESOURCE_RE.match(value):
        raise ValueError(
            f"{value!r} is not an extended resource name of the form <domain>/<name> "
            "(lower-case DNS domain, name of at most 63 letters, digits, '-', '_' or '.')"
        )
    if value.split("/", 1)[0].endswith("kubernetes.io"):
        raise ValueError(f"{value!r}: the kubernetes.io domain is reserved")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class VhostUserConfig(_Model):
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
        return _check_resource_name(v)

    @field_validator("id_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _ID_PREFIX_RE.match(v):
            raise ValueError(f"{v!r}: use 1-16 lower-case letters, digits or '-', starting with a letter")
        return v

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError("mode must be an octal string such as '0770'")
        if isinstance(v, str):
            if not re.fullmatch(r"0?[0-7]{3}", v):
                raise ValueError(f"{v!r} is not an octal folder mode such as '0770'")
            v = int(v, 8)
        if not isinstance(v, int) or not 0 <= v <= 0o777:
            raise ValueError(f"{v!r} is not a folder mode between 0000 and 0777")
        return v

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


class DataplaneConfig(_Model):
    """``vhostplug.io/dataplane``: one device that mounts the whole socket root into the OVS-DPDK pod."""

    enabled: bool = True
    resource_name: str = "vhostplug.io/dataplane"

    def resource_names(self) -> list[str]:
        return [self.resource_name] if self.enabled else []

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, v: str) -> str:
        return _check_resource_name(v)


class VdpaSelectors(_Model):
    """Which vDPA devices a pool takes. Every given selector must match; within one list any value matches."""

    vendors: list[str] = []
    devices: list[str] = []
    drivers: list[str] = []
    pci_addresses: list[str] = []
    pf_names: list[str] = []
    vdpa_type: Literal["vhost", "virtio"] | None = None

    @field_validator("vendors", "devices")
    @classmethod
    def _hex_ids(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            norm = item.lower().removeprefix("0x")
            if not _HEX_ID_RE.match(norm):
                raise ValueError(f"{item!r} is not a 4-digit hex PCI id such as '15b3'")
            out.append(norm)
        return out

    @field_validator("pci_addresses")
    @classmethod
    def _pci(cls, v: list[str]) -> list[str]:
        for item in v:
            if not PCI_RE.match(item):
                raise ValueError(f"{item!r} is not a PCI address such as '0000:65:00.2'")
        return v

    @field_validator("drivers", "pf_names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for item in v:
            fsutil.check_component(item)
        return v


class VdpaPool(_Model):
    resource_name: str
    selectors: VdpaSelectors = VdpaSelectors()

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, v: str) -> str:
        return _check_resource_name(v)


class VdpaConfig(_Model):
    sysfs_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    rescan_seconds: float = Field(default=10.0, gt=0, le=3600)
    pools: list[VdpaPool] = []

    def resource_names(self) -> list[str]:
        return [p.resource_name for p in self.pools]


class DevicePluginConfig(_Model):
    """Everything the device plugin reads; the agent embeds it under its own ``devicePlugin`` key."""

    health_seconds: float = Field(default=5.0, gt=0, le=600)
    vhostuser: VhostUserConfig = VhostUserConfig()
    dataplane: DataplaneConfig = DataplaneConfig()
    vdpa: VdpaConfig = VdpaConfig()

    @model_validator(mode="after")
    def _unique_resources(self) -> DevicePluginConfig:
        names = [n for key in type(self).model_fields for n in _resource_names(getattr(self, key))]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"resource names must be unique, repeated: {', '.join(dup)}")
        return self


def _resource_names(section: object) -> list[str]:
    """The resource names a device kind's section serves (each kind's model has ``resource_names()``)."""
    names = getattr(section, "resource_names", None)
    return list(names()) if callable(names) else []


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_config(data: dict[str, Any] | None) -> DevicePluginConfig:
    """Validate a parsed config mapping; raise :class:`ConfigError` naming every bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"device plugin config must be a mapping, not {type(data).__name__}")
    try:
        return DevicePluginConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            lines.append(f"{_where(tuple(err['loc']))}: {msg}")
        raise ConfigError("invalid device plugin config:\n  " + "\n  ".join(lines)) from None
