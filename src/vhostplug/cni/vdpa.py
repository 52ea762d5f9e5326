"""The CNI verbs for a ``"device": "vdpa"`` network: on top of :class:`~vhostplug.vdpa.attach.VdpaAttacher`, with
IPAM delegated as for vhost-user and the same rollback discipline (every ADD step pushes its undo); the attach steps'
errors (:class:`~vhostplug.vdpa.attach.VdpaError`) become CNI error codes here, and the CNI result is built here.
DEL and GC find a vDPA attachment by its record or its representor port and give its netdev back through
:meth:`VdpaVerbs.release_port`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from vhostplug import deadline
from vhostplug.cni import ipam
from vhostplug.cni.netconf import NetConf
from vhostplug.cni.policy import DEFAULT_BRIDGE
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
from vhostplug.cni.verbs import VerbContext, ipam_env, new_record, prev_result, require_ready, require_status
from vhostplug.model import VhostUserPort
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

#: how long DEL/GC wait for the switch to drop a representor port
RELEASE_TIMEOUT = 5.0

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


def request(env: CniEnv, conf: NetConf) -> VdpaRequest:
    return VdpaRequest(
        network=conf.name,
        container_id=env.container_id,
        ifname=env.ifname,
        netns=env.netns,
        device_id=conf.effective_device_id or conf.pci_bus_id,
        bridge=conf.bridge or DEFAULT_BRIDGE,  # within_policy put the node policy's choice here
        mac=conf.runtime_config.mac,
        mtu=conf.mtu,
        vlan=conf.vlan,
        pool=conf.resource_name,
        iface_id=conf.iface_id or "",
        device_info_file=conf.device_info_file,
    )


class VdpaVerbs:
    def __init__(self, ctx: VerbContext) -> None:
        self.ctx = ctx

    @property
    def policy(self) -> VdpaPolicy:
        return self.ctx.options.vdpa or VdpaPolicy()

    def attacher(self, timeout: float | None = None) -> VdpaAttacher:
        wait = self.ctx.options.attach_timeout if timeout is None else timeout
        return VdpaAttacher(self.ctx.dataplane, self.policy, attach_timeout=wait)

    def within_policy(self, conf: NetConf) -> NetConf:
        """The node policy's say on a vDPA network: its bridge, device-info file and IPAM plugin."""
        policy = self.ctx.options.policy
        if conf.ipam is not None:
            policy.ipam_plugin(conf.ipam.get("type"))
        if conf.device_info_file is not None:
            policy.devinfo_file(conf.device_info_file)
        return conf.model_copy(update={"bridge": policy.bridge(conf.bridge)})

    # -- ADD ---------------------------------------------------------------------------------------------------
    def add(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> dict[str, Any]:
        conf = self.within_policy(conf)
        att = self.attacher()
        with self.ctx.locked():
            result = self._add(att, env, conf, raw, version)
            if not deadline.current().finish():  # its caller was answered "try again": undo it as DEL would
                LOG.warning("vDPA ADD of %s outlived its deadline: undoing what it made", env.container_id)
                self.ctx.undo_add(env, raw)
                raise CniError(TRY_AGAIN_LATER, "the vDPA ADD finished after its caller was answered")
            return result

    def _add(self, att: VdpaAttacher, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> dict[str, Any]:
        if not env.netns:
            raise CniError(INVALID_CONFIG, "CNI_NETNS is required for a vDPA attachment")
        require_ready(att.dp.ready())
        req = request(env, conf)
        with cni_errors():
            target = att.resolve(req)  # every input check before the first side effect (IPAM included)
        records = self.ctx.records
        undo: Undo = []
        try:
            # the record lets DEL and GC find the attachment (its representor port) without the network config
            records.save(new_record(env, conf, raw, target.representor, devinfo_file=req.device_info_file))
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

    # -- DEL / GC ----------------------------------------------------------------------------------------------
    def release_port(self, port: VhostUserPort) -> None:
        """The representor port off the switch, the pod's netdev back to the host, the representor as it was."""
        with cni_errors():
            self.attacher(RELEASE_TIMEOUT).undo_port(port, None)

    def sweep_orphans(self) -> list[str]:
        return []

    # -- STATUS ------------------------------------------------------------------------------------------------
    def status(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None:
        """The switch as for every network, and a vDPA bus where the pools look."""
        require_status(self.ctx)
        root = self.policy.sysfs_root
        if not (root / "bus/vdpa/devices").is_dir():
            raise CniError(STATUS_UNAVAILABLE, f"no vDPA bus under {root} on this node")

    # -- CHECK -------------------------------------------------------------------------------------------------
    def check(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None:
        conf = self.within_policy(conf)
        att = self.attacher()
        with self.ctx.locked():
            prev = prev_result(conf)
            require_ready(att.dp.health())
            record = self.ctx.records.load(env.container_id, env.ifname)
            if record is None:
                raise CniError(DATAPLANE_FAILURE, f"no attachment {env.container_id}/{env.ifname} on this node")
            with cni_errors():
                att.check(request(env, conf), prev, record.port_name)
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
