"""The CNI verbs for a vDPA device: what ADD does (and undoes), DEL, CHECK and GC, keeping no state of our own.

ADD (after the handler's IPAM ADD): resolve the device and its representor in sysfs (nothing moves if that fails),
then for a ``virtio`` device move its netdev into the pod as ``CNI_IFNAME`` with MAC/MTU/up and the IPAM result; for a
``vhost`` device nothing moves (the pod got ``/dev/vhost-vdpa-N`` from the device plugin); then the representor joins
the bridge in one OVSDB transaction and the device-info file is written. Every step pushes its undo.

The representor's OVS Interface carries everything DEL needs (netdev's original name, ifindex, MAC, MTU, state, the
pod's netns path, device-info file), so DEL works from OVSDB alone, also after the pod's namespace is gone: then the
netdev is looked for in the host namespace by its stored ifindex and the pod MAC (where the kernel puts a physical
netdev back when its namespace dies) and renamed back.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug import deviceinfo, fsutil
from vhostplug.cni.spec import DATAPLANE_FAILURE, INVALID_CONFIG, IO_FAILURE, CniError, convert_ips, version_tuple
from vhostplug.cni.undo import Undo
from vhostplug.deviceplugin.vdpa import VdpaPool
from vhostplug.model import EXTERNAL_ID_ATTACHMENT, NetdevPort, VhostUserPort, attachment_key
from vhostplug.protocols import Dataplane, DataplaneError, DataplaneUnavailable
from vhostplug.vdpa import netdev, sysfs

LOG = logging.getLogger(__name__)

#: external_ids key naming the vDPA device of a representor port (what marks a port as a vDPA attachment)
ID_VDPA_DEVICE = "vhostplug-vdpa-device"
ID_NETWORK = "vhostplug-network"
ID_DEVINFO = "vhostplug-devinfo"
ID_NETNS = "vhostplug-netns"
ID_DRIVER = "vhostplug-vdpa-driver"
ID_NETDEV = "vhostplug-vdpa-netdev"
ID_INDEX = "vhostplug-vdpa-ifindex"
ID_MAC = "vhostplug-vdpa-mac"
ID_MTU = "vhostplug-vdpa-mtu"
ID_UP = "vhostplug-vdpa-up"
ID_REP_MTU = "vhostplug-rep-mtu"
ID_REP_UP = "vhostplug-rep-up"


@dataclass(frozen=True)
class VdpaPolicy:
    """Node policy (the agent's configuration, never the netconf): where sysfs and /dev are, which pools exist."""

    sysfs_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    pools: tuple[VdpaPool, ...] = ()


@dataclass(frozen=True)
class VdpaRequest:
    """One ADD/DEL/CHECK, from the CNI environment and the network config."""

    network: str
    container_id: str
    ifname: str
    netns: str
    device_id: str | None
    bridge: str
    mac: str | None = None
    mtu: int | None = None
    vlan: int | None = None
    pool: str | None = None
    iface_id: str = ""
    device_info_file: str | None = None

    @property
    def key(self) -> str:
        return attachment_key(self.container_id, self.ifname)


@dataclass
class Added:
    """What ADD made, for the CNI result."""

    target: sysfs.VdpaTarget
    mac: str
    mtu: int | None
    path: str  # /dev/vhost-vdpa-N (vhost) or the pod's netdev name (virtio)
    representor_mac: str = ""
    ids: dict[str, str] = field(default_factory=dict)


def _fail(code: int, exc: Exception, what: str = "") -> CniError:
    return CniError(code, f"{what}{exc}" if what else str(exc))


class VdpaAttacher:
    def __init__(self, dataplane: Dataplane, policy: VdpaPolicy, attach_timeout: float = 5.0) -> None:
        self.dp = dataplane
        self.policy = policy
        self.attach_timeout = attach_timeout

    # -- ADD -----------------------------------------------------------------------------------------------------
    def resolve(self, req: VdpaRequest) -> sysfs.VdpaTarget:
        """Find and check the device before any side effect (unknown, unhealthy, other pool, no representor)."""
        if not req.device_id:
            raise CniError(
                INVALID_CONFIG,
                "a vDPA attachment needs runtimeConfig.deviceID (the vDPA device name or PCI address)",
                "request the pool's resource in the pod and name it in the NetworkAttachmentDefinition's "
                "k8s.v1.cni.cncf.io/resourceName annotation",
            )
        if req.mac and not _unicast_mac(req.mac):
            raise CniError(
                INVALID_CONFIG, f"runtimeConfig.mac {req.mac!r} is not a unicast MAC such as 02:00:00:00:00:01"
            )
        p = self.policy
        try:
            dev = sysfs.find_device(p.sysfs_root, p.dev_root, req.device_id)
        except sysfs.VdpaLookupError as exc:
            raise _fail(INVALID_CONFIG, exc) from None
        try:
            target = sysfs.resolve(p.sysfs_root, p.dev_root, dev.name, list(p.pools), req.pool)
        except sysfs.VdpaLookupError as exc:
            code = INVALID_CONFIG if "pool" in str(exc) else DATAPLANE_FAILURE
            raise _fail(code, exc) from None
        # one representor per device: the device is in use when its representor already is a switch port
        held = self.dp.get_port(target.representor)
        if held is not None:
            who = held.attachment_key or "something not made by vhostplug"
            raise CniError(
                DATAPLANE_FAILURE,
                f"vDPA device {dev.name} is in use by {who} (its representor {held.name} is on bridge {held.bridge})",
            )
        sw = self.dp.netdev_namespace()
        if netdev.get(target.representor, sw) is None:
            where = f"the namespace of the switch ({sw})" if sw else "the host namespace"
            raise CniError(DATAPLANE_FAILURE, f"representor {target.representor} of {dev.name} is not in {where}")
        return target

    def add(
        self,
        req: VdpaRequest,
        target: sysfs.VdpaTarget,
        ipam_result: dict[str, Any],
        undo: Undo,
    ) -> Added:
        """The side effects, in order, each pushing its undo (``target`` comes from :meth:`resolve`)."""
        dev = target.device
        sw = self.dp.netdev_namespace()
        rep = netdev.get(target.representor, sw)
        if rep is None:
            raise CniError(DATAPLANE_FAILURE, f"representor {target.representor} of {dev.name} vanished")
        ids: dict[str, str] = {
            EXTERNAL_ID_ATTACHMENT: req.key,
            "vhostplug-container-id": req.container_id,
            "vhostplug-ifname": req.ifname,
            "iface-id": req.iface_id or req.key,
            "iface-status": "active",
            ID_NETWORK: req.network,
            ID_VDPA_DEVICE: dev.name,
            ID_DRIVER: dev.driver,
            ID_NETNS: req.netns,
            ID_REP_MTU: str(rep.mtu),
            ID_REP_UP: str(rep.up).lower(),
        }
        if dev.driver == "virtio":
            added = self._add_virtio(req, target, ipam_result, ids, undo)
        else:
            added = self._add_vhost(req, target, ids)
        ids["attached-mac"] = added.mac
        if req.device_info_file:
            ids[ID_DEVINFO] = req.device_info_file
        if req.mtu:
            netdev.set_link(rep.name, sw, mtu=req.mtu)
            undo.append(lambda: netdev.set_link(rep.name, sw, mtu=rep.mtu))
        netdev.set_link(rep.name, sw, state="up")
        undo.append(lambda: netdev.set_link(rep.name, sw, state="up" if rep.up else "down"))
        try:
            port = NetdevPort(rep.name, req.bridge, tuple(sorted(ids.items())), req.mtu, req.vlan)
            self.dp.attach_netdev(port, timeout=self.attach_timeout)
        except DataplaneUnavailable:
            raise
        except DataplaneError as exc:
            raise CniError(DATAPLANE_FAILURE, str(exc)) from None
        undo.append(lambda: self.dp.detach(rep.name))
        if req.device_info_file:
            path = Path(req.device_info_file)
            info = deviceinfo.vdpa(
                dev.name,
                dev.driver,
                dev.container_path if dev.driver == "vhost" else req.ifname,
                dev.pci_address,
                dev.pf_pci_address,
                rep.name,
            )
            deviceinfo.write_at(path, info)
            undo.append(lambda: fsutil.unlink_in(path.parent, path.name))
        added.representor_mac = rep.mac
        added.ids = ids
        return added

    def _add_virtio(
        self,
        req: VdpaRequest,
        target: sysfs.VdpaTarget,
        ipam_result: dict[str, Any],
        ids: dict[str, str],
        undo: Undo,
    ) -> Added:
        dev = target.device
        assert dev.netdev is not None  # discovery only lists virtio devices that have a netdev
        link = netdev.get(dev.netdev)
        if link is None:
            raise CniError(
                DATAPLANE_FAILURE,
                f"netdev {dev.netdev} of vDPA device {dev.name} is not in the host namespace (in use by a pod?)",
            )
        ids.update({ID_NETDEV: link.name, ID_INDEX: str(link.index), ID_MAC: link.mac, ID_MTU: str(link.mtu)})
        ids[ID_UP] = str(link.up).lower()
        try:
            moved = netdev.move_into(link.name, req.netns, req.ifname, req.mac, req.mtu)
        except netdev.NetdevError as exc:
            raise CniError(DATAPLANE_FAILURE, str(exc)) from None
        undo.append(lambda: netdev.move_out(req.netns, req.ifname, link.name, link.mac, link.mtu, link.up))
        try:
            netdev.apply_ipam(req.netns, req.ifname, ipam_result.get("ips", []), ipam_result.get("routes", []))
        except netdev.NetdevError as exc:
            raise CniError(DATAPLANE_FAILURE, str(exc)) from None
        return Added(target, moved.mac, moved.mtu, req.ifname)

    def _add_vhost(self, req: VdpaRequest, target: sysfs.VdpaTarget, ids: dict[str, str]) -> Added:
        dev = target.device
        mac = req.mac or ""
        if mac and dev.pf_name and netdev.get(dev.pf_name) is not None:
            try:
                netdev.set_link(dev.pf_name, vf={"vf": target.vf_index, "mac": mac})
            except netdev.NetdevError as exc:
                raise CniError(DATAPLANE_FAILURE, f"cannot set the MAC of VF {target.vf_index}: {exc}") from None
        elif mac:
            LOG.warning("PF %s of %s is not a host netdev: MAC %s only reported, not set", dev.pf_name, dev.name, mac)
        return Added(target, mac, req.mtu, dev.container_path)

    # -- DEL -----------------------------------------------------------------------------------------------------
    def undo_port(self, port: VhostUserPort, netns: str | None) -> None:
        """Give back what ADD made around the port (the device-info file is the caller's, from the record)."""
        ids = port.external_ids
        self.dp.detach(port.name)
        if ids.get(ID_DRIVER) == "virtio":
            self._return_netdev(ids, netns or ids.get(ID_NETNS) or "")
        sw = self.dp.netdev_namespace()
        try:
            if netdev.get(port.name, sw) is not None:
                state = "up" if ids.get(ID_REP_UP) == "true" else "down"
                mtu = int(ids.get(ID_REP_MTU) or 0) or None
                netdev.set_link(port.name, sw, state=state, **({"mtu": mtu} if mtu else {}))
        except (netdev.NetdevError, ValueError) as exc:
            LOG.info("representor %s not restored: %s", port.name, exc)

    def _return_netdev(self, ids: dict[str, str], netns: str) -> None:
        name, ifname = ids.get(ID_NETDEV, ""), ids.get("vhostplug-ifname", "")
        mac, mtu, up = ids.get(ID_MAC) or None, int(ids.get(ID_MTU) or 0) or None, ids.get(ID_UP) == "true"
        if netns and os.path.exists(netns):
            try:
                if netdev.get(ifname, netns) is not None:
                    netdev.move_out(netns, ifname, name, mac, mtu, up)
                    return
            except netdev.NetdevError as exc:
                raise CniError(IO_FAILURE, f"cannot return {ifname} to the host: {exc}") from None
        # the pod's namespace is gone (or no longer holds it): the kernel put a physical netdev back in the host
        found = netdev.find(None, index=int(ids.get(ID_INDEX) or 0), mac=ids.get("attached-mac") or None)
        if found is None and name:
            found = netdev.get(name)
        if found is None:
            LOG.info("netdev %s of %s is gone (its namespace %s died with it)", name, ids.get(ID_VDPA_DEVICE), netns)
            return
        try:
            netdev.restore_host(found.index, name, mac, mtu, up)
        except netdev.NetdevError as exc:
            raise CniError(IO_FAILURE, f"cannot rename {found.name} back to {name}: {exc}") from None

    # -- CHECK ---------------------------------------------------------------------------------------------------
    def check(self, req: VdpaRequest, prev: dict[str, Any], port_name: str) -> None:
        port = self.dp.get_port(port_name)
        if port is None or port.attachment_key != req.key:
            raise CniError(DATAPLANE_FAILURE, f"the representor port {port_name} of {req.key} is not on the switch")
        if port.ofport is None or port.ofport <= 0:
            raise CniError(DATAPLANE_FAILURE, f"representor port {port.name} has no ofport ({port.status})")
        ids = port.external_ids
        if req.device_id and req.device_id not in (ids.get(ID_VDPA_DEVICE), _pci_of(self.policy, ids)):
            raise CniError(DATAPLANE_FAILURE, f"{req.key} holds {ids.get(ID_VDPA_DEVICE)}, not {req.device_id}")
        entries = [i for i in prev.get("interfaces", []) if i.get("name") == req.ifname]
        if not entries:
            raise CniError(INVALID_CONFIG, f"prevResult has no interface {req.ifname}")
        want_mac = str(entries[0].get("mac") or "")
        if ids.get(ID_DRIVER) == "virtio":
            link = netdev.get(req.ifname, req.netns)
            if link is None:
                raise CniError(DATAPLANE_FAILURE, f"{req.ifname} is missing from {req.netns}")
            if want_mac and link.mac.lower() != want_mac.lower():
                raise CniError(DATAPLANE_FAILURE, f"{req.ifname} has MAC {link.mac}, prevResult says {want_mac}")
            have = set(netdev.addresses(req.netns, req.ifname))
            for ip in prev.get("ips", []):
                if str(ip.get("address")) not in have:
                    raise CniError(DATAPLANE_FAILURE, f"{req.ifname} lacks address {ip.get('address')}")
        else:
            dev = sysfs.find_device(self.policy.sysfs_root, self.policy.dev_root, ids.get(ID_VDPA_DEVICE, ""))
            if not sysfs.healthy(dev):
                raise CniError(DATAPLANE_FAILURE, f"{dev.health_path} of {dev.name} is missing")


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


def _unicast_mac(mac: str) -> bool:
    return re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", mac) is not None and not int(mac[:2], 16) & 1


def _pci_of(policy: VdpaPolicy, ids: dict[str, str]) -> str | None:
    try:
        return sysfs.find_device(policy.sysfs_root, policy.dev_root, ids.get(ID_VDPA_DEVICE, "")).pci_address
    except sysfs.VdpaLookupError:
        return None
