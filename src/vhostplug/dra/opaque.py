"""The opaque per-claim configuration of our driver (``spec.devices.config[].opaque`` naming our driver, and the
DeviceClass's), validated strictly: unknown keys and bad values are refused naming the key. Mode, VLAN and MTU are
checked by the netconf's own model (:class:`vhostplug.cni.netconf.NetConf`), so a claim and a network config accept
exactly the same values; the bridge and folders are not tenant input here (the device names the bridge).

```yaml
opaque:
  driver: vhostuser.vhostplug.io
  parameters:
    apiVersion: vhostplug.io/v1alpha1
    kind: VhostUserConfig
    mode: server            # the app / QEMU makes the socket (OVS dpdkvhostuserclient); client: OVS makes it
    vlan: 100
    mtu: 9000
    queues: 4               # told to the app / VM (metadata, status); vhost-user negotiates the rest
    ingressPolicing: {rateKbps: 100000, burstKb: 10000}
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vhostplug.cni.netconf import NetConf
from vhostplug.model import Mode
from vhostplug.validation import describe

API_VERSION = "vhostplug.io/v1alpha1"
KINDS = ("VhostUserConfig", "VdpaConfig")


class ConfigError(ValueError):
    """A claim's configuration is unusable; the message names the key."""


class IngressPolicing(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rate_kbps: int = Field(alias="rateKbps", ge=0, le=2**32 - 1)
    burst_kb: int = Field(0, alias="burstKb", ge=0, le=2**32 - 1)


class DeviceConfig(BaseModel):
    """What a claim may set on its port; unset fields keep the node's defaults."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["vhostplug.io/v1alpha1"] = Field("vhostplug.io/v1alpha1", alias="apiVersion")
    kind: Literal["VhostUserConfig", "VdpaConfig"] = "VhostUserConfig"
    mode: Mode = Mode.SERVER
    vlan: int | None = None
    mtu: int | None = None
    queues: int | None = Field(None, ge=1, le=128)
    ingress_policing: IngressPolicing | None = Field(None, alias="ingressPolicing")


def parse(parameters: Sequence[dict[str, Any]]) -> DeviceConfig:
    """Merge the opaque parameters that apply to one request (DeviceClass first, then the claim's own, in order:
    a later one's keys win) and validate the result."""
    merged: dict[str, Any] = {}
    for i, params in enumerate(parameters):
        if not isinstance(params, dict):
            raise ConfigError(f"opaque config #{i}: parameters must be an object, got {type(params).__name__}")
        merged.update(params)
    try:
        conf = DeviceConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"invalid opaque config: {describe(exc)}") from None
    # the netconf's own checks for what both accept (mode, VLAN, MTU)
    shared: dict[str, Any] = {"name": "claim", "type": "vhostplug", "mode": conf.mode}
    if conf.vlan is not None:
        shared["vlan"] = conf.vlan
    if conf.mtu is not None:
        shared["mtu"] = conf.mtu
    try:
        NetConf.model_validate(shared)
    except ValidationError as exc:
        raise ConfigError(f"invalid opaque config: {describe(exc)}") from None
    return conf
