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

from vhostplug import deviceinfo, fsutil, ovsvhost
from vhostplug.model import NetdevPort, VhostUserPort, attachment_key
from vhostplug.protocols import Dataplane, DataplaneError, DataplaneUnavailable
from vhostplug.undo import Undo
from vhostplug.vdpa import netdev, sysfs
from vhostplug.vdpa.discovery import VdpaPool, healthy

LOG = logging.getLogger(__name__)


class VdpaError(Exception):
    """A vDPA step failed: ``msg`` says what, ``details`` what to do when there is something to say. The CNI verbs
    (:mod:`vhostplug.cni.vdpa`) answer each kind with its CNI error code."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class VdpaInputError(VdpaError):
    """The request cannot be served as asked: no device named, a bad MAC, an unknown device, another pool's device."""


class VdpaDeviceError(VdpaError):
    """The device, its representor or the switch is not in a state to attach (or, for CHECK, is not as ADD left it)."""


class VdpaRestoreError(VdpaError):
    """DEL could not give the pod's netdev back to the host."""


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


class VdpaAttacher:
    def __init__(self, dataplane: Dataplane, policy: VdpaPolicy, attach_timeout: float = 5.0) -> None:
        self.dp = dataplane
        self.policy = policy
        self.attach_timeout = attach_timeout

    # -- ADD -----------------------------------------------------------------------------------------------------
    def resolve(self, req: VdpaRequest) -> sysfs.VdpaTarget:
        """Find and check the device before any side effect (unknown, unhealthy, other pool, no representor)."""
        if not req.device_id:
            raise VdpaInputError(
                "a vDPA attachment needs runtimeConfig.deviceID (the vDPA device name or PCI address)",
                "request the pool's resource in the pod and name it in the NetworkAttachmentDefinition's "
                "k8s.v1.cni.cncf.io/resourceName annotation",
            )
        if req.mac and not _unicast_mac(req.mac):
            raise VdpaInputError(f"runtimeConfig.mac {req.mac!r} is not a unicast MAC such as 02:00:00:00:00:01")
        p = self.policy
        try:
            dev = sysfs.find_device(p.sysfs_root, p.dev_root, req.device_id)
        except sysfs.VdpaLookupError as exc:
            raise VdpaInputError(str(exc)) from None
        try:
            target = sysfs.resolve(p.sysfs_root, p.dev_root, dev.name, list(p.pools), req.pool)
        except sysfs.VdpaLookupError as exc:
            kind = VdpaInputError if "pool" in str(exc) else VdpaDeviceError
            raise kind(str(exc)) from None
        # one representor per device: the device is in use when its representor already is a switch port
        held = self.dp.get_port(target.representor)
        if held is not None:
            who = held.attachment_key or "something not made by vhostplug"
            raise VdpaDeviceError(
                f"vDPA device {dev.name} is in use by {who} (its representor {held.name} is on bridge {held.bridge})",
            )
        sw = self.dp.netdev_namespace()
        if netdev.get(target.representor, sw) is None:
            where = f"the namespace of the switch ({sw})" if sw else "the host namespace"
            raise VdpaDeviceError(f"representor {target.representor} of {dev.name} is not in {where}")
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
            raise VdpaDeviceError(f"representor {target.representor} of {dev.name} vanished")
        ids: dict[str, str] = {
            ovsvhost.ID_ATTACHMENT: req.key,
            ovsvhost.ID_CONTAINER: req.container_id,
            ovsvhost.ID_IFNAME: req.ifname,
            ovsvhost.ID_IFACE: req.iface_id or req.key,
            ovsvhost.ID_IFACE_STATUS: ovsvhost.IFACE_STATUS_ACTIVE,
            ovsvhost.ID_NETWORK: req.network,
            ovsvhost.ID_VDPA_DEVICE: dev.name,
            ovsvhost.ID_VDPA_DRIVER: dev.driver,
            ovsvhost.ID_NETNS: req.netns,
            ovsvhost.ID_REP_MTU: str(rep.mtu),
            ovsvhost.ID_REP_UP: str(rep.up).lower(),
        }
        if dev.driver == "virtio":
            added = self._add_virtio(req, target, ipam_result, ids, undo)
        else:
            added = self._add_vhost(req, target, ids)
        ids[ovsvhost.ID_ATTACHED_MAC] = added.mac
        if req.device_info_file:
            ids[ovsvhost.ID_DEVINFO] = req.device_info_file
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
            raise VdpaDeviceError(str(exc)) from None
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
            raise VdpaDeviceError(
                f"netdev {dev.netdev} of vDPA device {dev.name} is not in the host namespace (in use by a pod?)",
            )
        ids.update(
            {
                ovsvhost.ID_VDPA_NETDEV: link.name,
                ovsvhost.ID_VDPA_IFINDEX: str(link.index),
                ovsvhost.ID_VDPA_MAC: link.mac,
                ovsvhost.ID_VDPA_MTU: str(link.mtu),
            }
        )
        ids[ovsvhost.ID_VDPA_UP] = str(link.up).lower()
        try:
            moved = netdev.move_into(link.name, req.netns, req.ifname, req.mac, req.mtu)
        except netdev.NetdevError as exc:
            raise VdpaDeviceError(str(exc)) from None
        undo.append(lambda: netdev.move_out(req.netns, req.ifname, link.name, link.mac, link.mtu, link.up))
        try:
            netdev.apply_ipam(req.netns, req.ifname, ipam_result.get("ips", []), ipam_result.get("routes", []))
        except netdev.NetdevError as exc:
            raise VdpaDeviceError(str(exc)) from None
        return Added(target, moved.mac, moved.mtu, req.ifname)

    def _add_vhost(self, req: VdpaRequest, target: sysfs.VdpaTarget, ids: dict[str, str]) -> Added:
        dev = target.device
        mac = req.mac or ""
        if mac and dev.pf_name and netdev.get(dev.pf_name) is not None:
            try:
                netdev.set_link(dev.pf_name, vf={"vf": target.vf_index, "mac": mac})
            except netdev.NetdevError as exc:
                raise VdpaDeviceError(f"cannot set the MAC of VF {target.vf_index}: {exc}") from None
        elif mac:
            LOG.warning("PF %s of %s is not a host netdev: MAC %s only reported, not set", dev.pf_name, dev.name, mac)
        return Added(target, mac, req.mtu, dev.container_path)

    # -- DEL -----------------------------------------------------------------------------------------------------
    def undo_port(self, port: VhostUserPort, netns: str | None) -> None:
        """Give back what ADD made around the port (the device-info file is the caller's, from the record)."""
        ids = port.external_ids
        self.dp.detach_netdev(port.name)
        if ids.get(ovsvhost.ID_VDPA_DRIVER) == "virtio":
            self._return_netdev(ids, netns or ids.get(ovsvhost.ID_NETNS) or "")
        sw = self.dp.netdev_namespace()
        try:
            if netdev.get(port.name, sw) is not None:
                state = "up" if ids.get(ovsvhost.ID_REP_UP) == "true" else "down"
                mtu = int(ids.get(ovsvhost.ID_REP_MTU) or 0) or None
                netdev.set_link(port.name, sw, state=state, **({"mtu": mtu} if mtu else {}))
        except (netdev.NetdevError, ValueError) as exc:
            LOG.info("representor %s not restored: %s", port.name, exc)

    def _return_netdev(self, ids: dict[str, str], netns: str) -> None:
        name, ifname = ids.get(ovsvhost.ID_VDPA_NETDEV, ""), ids.get(ovsvhost.ID_IFNAME, "")
        mac, mtu, up = (
            ids.get(ovsvhost.ID_VDPA_MAC) or None,
            int(ids.get(ovsvhost.ID_VDPA_MTU) or 0) or None,
            ids.get(ovsvhost.ID_VDPA_UP) == "true",
        )
        if netns and os.path.exists(netns):
            try:
                if netdev.get(ifname, netns) is not None:
                    netdev.move_out(netns, ifname, name, mac, mtu, up)
                    return
            except netdev.NetdevError as exc:
                raise VdpaRestoreError(f"cannot return {ifname} to the host: {exc}") from None
        # the pod's namespace is gone (or no longer holds it): the kernel put a physical netdev back in the host
        found = netdev.find(
            None, index=int(ids.get(ovsvhost.ID_VDPA_IFINDEX) or 0), mac=ids.get(ovsvhost.ID_ATTACHED_MAC) or None
        )
        if found is None and name:
            found = netdev.get(name)
        if found is None:
            LOG.info(
                "netdev %s of %s is gone (its namespace %s died with it)", name, ids.get(ovsvhost.ID_VDPA_DEVICE), netns
            )
            return
        try:
            netdev.restore_host(found.index, name, mac, mtu, up)
        except netdev.NetdevError as exc:
            raise VdpaRestoreError(f"cannot rename {found.name} back to {name}: {exc}") from None

    # -- CHECK ---------------------------------------------------------------------------------------------------
    def check(self, req: VdpaRequest, prev: dict[str, Any], port_name: str) -> None:
        port = self.dp.get_port(port_name)
        if port is None or port.attachment_key != req.key:
            raise VdpaDeviceError(f"the representor port {port_name} of {req.key} is not on the switch")
        if port.ofport is None or port.ofport <= 0:
            raise VdpaDeviceError(f"representor port {port.name} has no ofport ({port.status})")
        ids = port.external_ids
        if req.device_id and req.device_id not in (ids.get(ovsvhost.ID_VDPA_DEVICE), _pci_of(self.policy, ids)):
            raise VdpaDeviceError(f"{req.key} holds {ids.get(ovsvhost.ID_VDPA_DEVICE)}, not {req.device_id}")
        entries = [i for i in prev.get("interfaces", []) if i.get("name") == req.ifname]
        if not entries:
            raise VdpaInputError(f"prevResult has no interface {req.ifname}")
        want_mac = str(entries[0].get("mac") or "")
        if ids.get(ovsvhost.ID_VDPA_DRIVER) == "virtio":
            link = netdev.get(req.ifname, req.netns)
            if link is None:
                raise VdpaDeviceError(f"{req.ifname} is missing from {req.netns}")
            if want_mac and link.mac.lower() != want_mac.lower():
                raise VdpaDeviceError(f"{req.ifname} has MAC {link.mac}, prevResult says {want_mac}")
            have = set(netdev.addresses(req.netns, req.ifname))
            for ip in prev.get("ips", []):
                if str(ip.get("address")) not in have:
                    raise VdpaDeviceError(f"{req.ifname} lacks address {ip.get('address')}")
        else:
            dev = sysfs.find_device(self.policy.sysfs_root, self.policy.dev_root, ids.get(ovsvhost.ID_VDPA_DEVICE, ""))
            if not healthy(dev):
                raise VdpaDeviceError(f"{dev.health_path} of {dev.name} is missing")


def _unicast_mac(mac: str) -> bool:
    return re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", mac) is not None and not int(mac[:2], 16) & 1


def _pci_of(policy: VdpaPolicy, ids: dict[str, str]) -> str | None:
    try:
        return sysfs.find_device(policy.sysfs_root, policy.dev_root, ids.get(ovsvhost.ID_VDPA_DEVICE, "")).pci_address
    except sysfs.VdpaLookupError:
        return None
