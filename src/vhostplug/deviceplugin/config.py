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

from typing import Any

from pydantic import Field, ValidationError, create_model, model_validator

from vhostplug import validation
from vhostplug.configbase import SectionModel
from vhostplug.deviceplugin.kinds import KINDS


class ConfigError(ValueError):
    """The device plugin configuration is invalid; the message names each bad key."""


class DevicePluginConfig(SectionModel):
    """Everything the device plugin reads; the agent embeds it under its own ``devicePlugin`` key.

    Besides ``healthSeconds``, one section per device kind, named and typed as registered in
    :data:`vhostplug.deviceplugin.kinds.KINDS` (read them with :meth:`section`).
    """

    health_seconds: float = Field(default=5.0, gt=0, le=600)

    def section(self, name: str) -> Any:
        return getattr(self, name)

    @model_validator(mode="after")
    def _unique_resources(self) -> DevicePluginConfig:
        names = [n for key in type(self).model_fields for n in _resource_names(getattr(self, key))]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"resource names must be unique, repeated: {', '.join(dup)}")
        return self


_SECTIONS: dict[str, Any] = {name: (kind.section, kind.section()) for name, kind in KINDS.items()}
#: the model with every registered kind's section (defaults: each section's own)
_WithSections: type[DevicePluginConfig] = create_model(
    "DevicePluginConfig",
    __base__=DevicePluginConfig,
    __module__=__name__,
    **_SECTIONS,
)


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
        return _WithSections.model_validate(data)
    except ValidationError as exc:
        lines = validation.problems(exc, where=_where)
        raise ConfigError("invalid device plugin config:\n  " + "\n  ".join(lines)) from None
