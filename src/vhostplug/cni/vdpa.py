"""The CNI verbs for a ``"device": "vdpa"`` network: on top of :class:`~vhostplug.vdpa.attach.VdpaAttacher`, with
IPAM delegated as for vhost-user and the same rollback discipline (every ADD step pushes its undo); the attach steps'
errors (:class:`~vhostplug.vdpa.attach.VdpaError`) become CNI error codes here, and the CNI result is built here."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Protocol

from vhostplug import ovsvhost
from vhostplug.cni import ipam
from vhostplug.cni.netconf import NetConf
from vhostplug.cni.policy import DEFAULT_BRIDGE
from vhostplug.cni.records import Record, RecordStore
from vhostplug.cni.spec import (
    DATAPLANE_FAILURE,
    INVALID_CONFIG,
    IO_FAILURE,
    STATUS_UNAVAILABLE,
    TRY_AGAIN_LATER,
    CniEnv,
    CniError,
    convert_ips,
    version_tuple,
)
from vhostplug.model import VhostUserPort
from vhostplug.protocols import Dataplane
from vhostplug.undo import Undo, roll_back
from vhostplug.vdpa.attach import (
    Added,
    VdpaAttacher,
    VdpaDeviceError,
    VdpaError,
    VdpaInputError,
    VdpaPolicy,
    VdpaRequest,
    VdpaRestoreError,
)

LOG = logging.getLogger(__name__)


#: each kind of attach-step failure -> its CNI error code
ERROR_CODES: dict[type[VdpaError], int] = {
    VdpaInputError: INVALID_CONFIG,
    VdpaDeviceError: DATAPLANE_FAILURE,
    VdpaRestoreError: IO_FAILURE,
}


@contextlib.contextmanager
def cni_errors() -> Iterator[None]:
    """Answer an attach step's :class:`VdpaError` as the CNI error of its kind (same message and details)."""
    try:
        yield
    except VdpaError as exc:
        raise CniError(ERROR_CODES[type(exc)], exc.msg, exc.details) from None


class IpamEnv(Protocol):
    def __call__(self, env: CniEnv, container_id: str, ifname: str) -> dict[str, str]: ...


def attacher(dataplane: Dataplane, policy: VdpaPolicy | None, timeout: float) -> VdpaAttacher:
    return VdpaAttacher(dataplane, policy or VdpaPolicy(), attach_timeout=timeout)


def request(env: CniEnv, conf: NetConf) -> VdpaRequest:
    return VdpaRequest(
        network=conf.name,
        container_id=env.container_id,
        ifname=env.ifname,
        netns=env.netns,
        device_id=conf.effective_device_id or conf.pci_bus_id,
        bridge=conf.bridge or DEFAULT_BRIDGE,  # the handler put the node policy's choice here
        mac=conf.runtime_config.mac,
        mtu=conf.mtu,
        vlan=conf.vlan,
        pool=conf.resource_name,
        iface_id=conf.iface_id or "",
        device_info_file=conf.device_info_file,
    )


def add(
    att: VdpaAttacher,
    env: CniEnv,
    conf: NetConf,
    raw: dict[str, Any],
    version: str,
    ipam_env: IpamEnv,
    records: RecordStore,
) -> dict[str, Any]:
    if not env.netns:
        raise CniError(INVALID_CONFIG, "CNI_NETNS is required for a vDPA attachment")
    health = att.dp.ready()
    if not health.ok:
        raise CniError(TRY_AGAIN_LATER, "the dataplane is not ready", health.detail)
    req = request(env, conf)
    with cni_errors():
        target = att.resolve(req)  # every input check before the first side effect (IPAM included)
    undo: Undo = []
    try:
        # the record lets DEL and GC find the attachment (its representor port) without the network config
        ipam_conf: dict[str, Any] | None = (
            {k: raw[k] for k in ("cniVersion", "name", "ipam") if k in raw} if conf.ipam else None
        )
        records.save(
            Record(
                container_id=req.container_id,
                ifname=req.ifname,
                network=req.network,
                port_name=target.representor,
                folder="",
                folder_made=False,
                socket_name="",
                config_file="",
                devinfo_file=req.device_info_file,
                ipam_conf=ipam_conf,
                cni_path=env.path,
            )
        )
        undo.append(lambda: records.remove(req.container_id, req.ifname))
        ipam_result: dict[str, Any] = {}
        if conf.ipam:
            i_env = ipam_env(env, req.container_id, req.ifname)
            ipam_result = ipam.delegate("ADD", raw, i_env, env.path)
            undo.append(lambda: ipam.delegate("DEL", raw, i_env, env.path))
        with cni_errors():
            added = att.add(req, target, ipam_result, undo)
    except BaseException:
        roll_back(undo, LOG, "vDPA rollback")
        raise
    out = result(version, req, added, ipam_result)
    if not out.get("dns") and conf.dns:
        out["dns"] = conf.dns
    return out


def is_vdpa(port: VhostUserPort) -> bool:
    """Whether an OVS port is the representor of a vDPA attachment (then DEL must also give its netdev back)."""
    return ovsvhost.ID_VDPA_DEVICE in port.external_ids


def undo(dataplane: Dataplane, policy: VdpaPolicy | None, port: VhostUserPort) -> None:
    """DEL/GC of a vDPA attachment found by its record or port: the port, the netdev back, the representor."""
    with cni_errors():
        attacher(dataplane, policy, 5.0).undo_port(port, None)


def status(policy: VdpaPolicy | None) -> None:
    """STATUS of a vDPA network: the node must have a vDPA bus where the pools look."""
    root = (policy or VdpaPolicy()).sysfs_root
    if not (root / "bus/vdpa/devices").is_dir():
        raise CniError(STATUS_UNAVAILABLE, f"no vDPA bus under {root} on this node")


def check(
    att: VdpaAttacher,
    env: CniEnv,
    conf: NetConf,
    raw: dict[str, Any],
    ipam_env: IpamEnv,
    records: RecordStore,
) -> None:
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    health = att.dp.health()
    if not health.ok:
        raise CniError(TRY_AGAIN_LATER, "the dataplane is not ready", health.detail)
    record = records.load(env.container_id, env.ifname)
    if record is None:
        raise CniError(DATAPLANE_FAILURE, f"no attachment {env.container_id}/{env.ifname} on this node")
    with cni_errors():
        att.check(request(env, conf), conf.prev_result, record.port_name)
    if conf.ipam:
        ipam.delegate("CHECK", raw, ipam_env(env, env.container_id, env.ifname), env.path)


def result(version: str, req: VdpaRequest, added: Added, ipam_result: dict[str, Any]) -> dict[str, Any]:
    """The CNI result: the representor (host side, index 0) and the pod interface (with ``sandbox``, index 1)."""
    dev = added.target.device
    rep = {"name": added.target.representor, "mac": added.representor_mac}
    pod: dict[str, Any] = {"name": req.ifname, "mac": added.mac, "sandbox": req.netns}
    if version_tuple(version) >= (1, 1, 0):
        if dev.pci_address:
            pod["pciID"] = dev.pci_address
        if dev.driver == "vhost":
            pod["socketPath"] = dev.container_path  # the char device DPDK's virtio_user opens, like a socket path
        if added.mtu:
            pod["mtu"] = added.mtu
    ips = convert_ips(version, ipam_result.get("ips", []))
    for ip in ips:
        ip["interface"] = 1
    out: dict[str, Any] = {"cniVersion": version, "interfaces": [rep, pod], "ips": ips}
    if ipam_result.get("routes"):
        out["routes"] = ipam_result["routes"]
    if ipam_result.get("dns"):
        out["dns"] = ipam_result["dns"]
    return out
