"""What the CNI verbs of every device share: their shape (:class:`DeviceVerbs`), what the handler hands them
(:class:`VerbContext`, with the node's :class:`HandlerOptions`), and the steps alike for all: the readiness checks, the
IPAM environment and the IPAM config a record keeps, CHECK's prevResult, and the record every ADD saves.

The handler (:mod:`vhostplug.cni.handler`) routes ADD, CHECK and STATUS by the netconf's ``device`` to one verbs object
per device (its ``DEVICES``): vhost-user (:mod:`vhostplug.cni.vhostuser`) and vDPA (:mod:`vhostplug.cni.vdpa`); DEL
and GC (:mod:`vhostplug.cni.cleanup`) give a found port to the verbs of the device it belongs to (:func:`device_of`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vhostplug import fsutil, ovsvhost
from vhostplug.cni import records
from vhostplug.cni.netconf import NetConf
from vhostplug.cni.policy import NodePolicy
from vhostplug.cni.records import FolderPrior, Record, RecordStore
from vhostplug.cni.spec import INVALID_CONFIG, STATUS_UNAVAILABLE, TRY_AGAIN_LATER, CniEnv, CniError
from vhostplug.model import DataplaneHealth, VhostUserPort
from vhostplug.protocols import Dataplane
from vhostplug.vdpa.attach import VdpaPolicy

#: the netconf ``device`` of each kind of attachment
VHOST_USER = "vhost-user"
VDPA = "vdpa"


@dataclass
class HandlerOptions:
    ownership: fsutil.Ownership = field(default_factory=fsutil.Ownership)
    client_socket_wait: float = 3.0
    attach_timeout: float = 5.0
    #: where the agent keeps its record of what each ADD made (see vhostplug.cni.records)
    state_dir: Path = field(default_factory=lambda: records.DEFAULT_ROOT)
    vdpa: VdpaPolicy | None = None  # node policy for "device": "vdpa" networks (sysfs, /dev, pools)
    #: what a netconf may choose on this node (see vhostplug.cni.policy)
    policy: NodePolicy = field(default_factory=NodePolicy)


@dataclass
class VerbContext:
    """What the handler shares with every device's verbs."""

    dataplane: Dataplane
    options: HandlerOptions
    records: RecordStore
    #: the handler's lock, waited for at most until the request's deadline
    locked: Callable[[], AbstractContextManager[None]]
    #: DEL's removal of one attachment, by container ID, ifname and candidate port names (caller holds the lock);
    #: returns the record it worked from
    forget: Callable[[str, str, list[str]], Record | None]
    #: DEL of the request's attachment, IPAM release included, for an ADD that finished too late (lock held)
    undo_add: Callable[[CniEnv, dict[str, Any]], None]


class DeviceVerbs(Protocol):
    """The verbs of one kind of attachment. ADD validates everything before its first side effect and undoes what it
    made when a later step fails; DEL and GC come through :meth:`release_port` with the port OVSDB holds."""

    def add(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> dict[str, Any]: ...

    def check(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None: ...

    def status(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None: ...

    def release_port(self, port: VhostUserPort) -> None:
        """DEL/GC (caller holds the lock): remove the attachment's port and give back what ADD did around it on the
        switch side (the files its record lists are the caller's)."""
        ...

    def sweep_orphans(self) -> list[str]:
        """The agent's tick: remove ports of failed ADDs that the switch applied after all; return their names."""
        ...


def device_of(port: VhostUserPort) -> str:
    """The netconf ``device`` a port of ours was made for: a vDPA representor is marked by its device's key."""
    return VDPA if ovsvhost.ID_VDPA_DEVICE in port.external_ids else VHOST_USER


def require_ready(health: DataplaneHealth) -> None:
    """ADD and CHECK: the switch must take attachments now, else code 11 (try again later)."""
    if not health.ok:
        raise CniError(TRY_AGAIN_LATER, "the dataplane is not ready", health.detail)


def readiness(ctx: VerbContext) -> DataplaneHealth:
    """Whether ADD can work now: the switch answers and is initialised, and, where the node's policy lets the agent
    make no bridges, each allowed bridge exists (STATUS and the agent's readiness probe)."""
    policy = ctx.options.policy
    return ctx.dataplane.health(() if policy.may_create_bridges else policy.bridges)


def require_status(ctx: VerbContext) -> None:
    """STATUS: code 50 naming why ADD cannot work now."""
    health = readiness(ctx)
    if not health.ok:
        raise CniError(STATUS_UNAVAILABLE, "vhostplug cannot add attachments now", health.detail)


def ipam_env(env: CniEnv, container_id: str, ifname: str) -> dict[str, str]:
    """The environment of a delegated IPAM call for one attachment."""
    out = {"CNI_CONTAINERID": container_id, "CNI_IFNAME": ifname, "CNI_PATH": ":".join(env.path)}
    if env.netns:
        out["CNI_NETNS"] = env.netns
    if env.args:
        # the pod's args were not meant for the IPAM plugin: tell it to ignore the ones it does not know
        args = {"IgnoreUnknown": "1", **env.args}
        out["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in args.items())
    return out


def ipam_conf(raw: dict[str, Any]) -> dict[str, Any]:
    """What an IPAM plugin needs on stdin for DEL, as ADD saw it (stored in the attachment's record)."""
    out: dict[str, Any] = {"cniVersion": raw.get("cniVersion"), "name": raw.get("name"), "ipam": raw.get("ipam")}
    return {k: v for k, v in out.items() if v is not None}


def prev_result(conf: NetConf) -> dict[str, Any]:
    """CHECK's prevResult, which it cannot do without."""
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    return conf.prev_result


def prev_interface(prev: dict[str, Any], ifname: str) -> dict[str, Any]:
    """prevResult's entry of the interface ``ifname``."""
    entries = [i for i in prev.get("interfaces", []) if i.get("name") == ifname]
    if not entries:
        raise CniError(INVALID_CONFIG, f"prevResult has no interface {ifname}")
    return dict(entries[0])


def new_record(
    env: CniEnv,
    conf: NetConf,
    raw: dict[str, Any],
    port_name: str,
    *,
    folder: str = "",
    folder_made: bool = False,
    socket_name: str = "",
    config_file: str = "",
    folder_prior: FolderPrior | None = None,
    devinfo_file: str | None = None,
    mac: str = "",
) -> Record:
    """The record an ADD saves before its first side effect on the switch, so DEL and GC find what it made."""
    return Record(
        container_id=env.container_id,
        ifname=env.ifname,
        network=conf.name,
        port_name=port_name,
        folder=folder,
        folder_made=folder_made,
        socket_name=socket_name,
        config_file=config_file,
        folder_prior=folder_prior,
        devinfo_file=devinfo_file,
        ipam_conf=ipam_conf(raw) if conf.ipam else None,
        cni_path=env.path,
        mac=mac,
    )
