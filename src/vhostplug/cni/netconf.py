"""The vhostplug network configuration (what the runtime or Multus puts on the plugin's stdin), validated with pydantic.

Unknown keys are refused with a message naming them: a typo in a NetworkAttachmentDefinition should fail loudly
at ADD, not silently fall back to a default. Host paths and bridges here only select within the node policy
(:mod:`vhostplug.cni.policy`); left out, the node's defaults apply.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vhostplug import fsutil
from vhostplug.cni.policy import check_bridge_name
from vhostplug.cni.spec import INVALID_CONFIG, CniError
from vhostplug.model import Mode
from vhostplug.validation import absolute_path, describe


class RuntimeConfig(BaseModel):
    # the runtime passes only the capabilities we declared, but other plugins' keys may ride along: ignore those
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    device_id: str | None = Field(None, alias="deviceID")
    device_info_file: str | None = Field(None, alias="CNIDeviceInfoFile")
    mac: str | None = None

    @field_validator("device_info_file")
    @classmethod
    def _devinfo_path(cls, v: str | None) -> str | None:
        return None if v is None else absolute_path(v, "runtimeConfig.CNIDeviceInfoFile")


class NetConf(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    cni_version: str | None = Field(None, alias="cniVersion")
    cni_versions: list[str] | None = Field(None, alias="cniVersions")
    name: str = Field(min_length=1, max_length=253)
    type: Literal["vhostplug"]
    bridge: str | None = None
    mode: Mode = Mode.SERVER
    # "vdpa": plug the vDPA device the pool handed out (runtimeConfig.deviceID); see vhostplug.vdpa and docs/vdpa.md
    device: Literal["vhost-user", "vdpa"] = "vhost-user"
    resource_name: str | None = Field(None, alias="resourceName")
    iface_id: str | None = Field(None, alias="ifaceID", min_length=1, max_length=255)
    mtu: int | None = Field(None, ge=68, le=9710)
    vlan: int | None = Field(None, ge=0, le=4095)
    socket_root: str | None = Field(None, alias="socketRoot")
    container_socket_root: str | None = Field(None, alias="containerSocketRoot")
    agent_socket: str | None = Field(None, alias="agentSocket")
    ipam: dict[str, Any] | None = None
    dns: dict[str, Any] | None = None
    capabilities: dict[str, bool] | None = None
    runtime_config: RuntimeConfig = Field(default_factory=RuntimeConfig, alias="runtimeConfig")
    device_id: str | None = Field(None, alias="deviceID")
    pci_bus_id: str | None = Field(None, alias="pciBusID")
    args: dict[str, Any] | None = None
    prev_result: dict[str, Any] | None = Field(None, alias="prevResult")
    disable_check: bool = Field(False, alias="disableCheck")
    disable_gc: bool = Field(False, alias="disableGC")
    # kuryr / os-vif inputs (see vhostplug.kuryr.cni): a Neutron port binding or an os-vif VIFVHostUser primitive
    kuryr: dict[str, Any] | None = None
    os_vif: dict[str, Any] | str | None = Field(None, alias="osVif")
    neutron_port: dict[str, Any] | str | None = Field(None, alias="neutronPort")
    gc_attachments: list[dict[str, str]] | None = Field(None, alias="cni.dev/attachments")
    valid_attachments: list[dict[str, str]] | None = Field(None, alias="cni.dev/valid-attachments")

    @field_validator("bridge")
    @classmethod
    def _bridge(cls, v: str | None) -> str | None:
        return None if v is None else check_bridge_name(v)

    @field_validator("socket_root", "container_socket_root")
    @classmethod
    def _roots(cls, v: str | None) -> str | None:
        return None if v is None else absolute_path(v, "socketRoot")

    @field_validator("agent_socket")
    @classmethod
    def _agent(cls, v: str | None) -> str | None:
        return None if v is None else absolute_path(v, "agentSocket")

    @property
    def effective_device_id(self) -> str | None:
        return self.runtime_config.device_id or self.device_id

    @property
    def device_info_file(self) -> str | None:
        return self.runtime_config.device_info_file


def parse(data: dict[str, Any]) -> NetConf:
    """Validate a decoded netconf (the agent decodes stdin once, in :mod:`vhostplug.cni.wire`); IPAM delegation
    passes the dict itself on unchanged."""
    try:
        conf = NetConf.model_validate(data)
    except ValidationError as exc:
        raise CniError(INVALID_CONFIG, "invalid vhostplug network configuration", describe(exc, "(config)")) from None
    if conf.effective_device_id is not None:
        try:
            fsutil.check_component(conf.effective_device_id, "deviceID")
        except fsutil.UnsafePathError as exc:
            raise CniError(INVALID_CONFIG, str(exc)) from None
    return conf
