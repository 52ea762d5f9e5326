"""The agent's ``dra.slices:`` section: what the node publishes in its ResourceSlices (vhost-user port slots per
allowed bridge, their NUMA node and modes, whether vDPA devices of the device plugin's vDPA pools are published) and
how often it checks them. Validated with the rest of the agent configuration; see docs/dra.md."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vhostplug.model import Mode


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BridgeSlots(_Strict):
    """What the node says of one bridge's vhost-user ports (attributes a DeviceClass or a claim selects on)."""

    #: the NUMA node of the bridge's PMD threads and physical ports (left out: not published)
    numa_node: int | None = Field(None, alias="numaNode", ge=0, le=1023)
    #: the vhost-user modes a claim may ask for on this bridge (``server``: the app makes the socket)
    modes: list[Mode] = Field(default_factory=lambda: [Mode.SERVER, Mode.CLIENT], min_length=1)
    #: slots of this bridge (default: ``slotsPerBridge``)
    slots: int | None = Field(None, ge=0, le=1024)

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[Mode]) -> list[Mode]:
        return list(dict.fromkeys(v))


class SlicesConfig(_Strict):
    #: vhost-user port slots published per allowed bridge (0: none)
    slots_per_bridge: int = Field(16, alias="slotsPerBridge", ge=0, le=1024)
    #: per-bridge settings; every key must be one of ``bridges.allowed`` (checked against the node policy)
    bridges: dict[str, BridgeSlots] = Field(default_factory=dict)
    #: publish the vDPA devices the ``devicePlugin.vdpa`` pools find (a device then must not be handed out by the
    #: device plugin too: see docs/dra.md)
    vdpa: bool = True
    #: how often the agent re-reads its vDPA pools and checks its slices against the API server
    resync_seconds: float = Field(30.0, alias="resyncSeconds", gt=0, le=3600)
