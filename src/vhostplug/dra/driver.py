"""NodePrepareResources / NodeUnprepareResources of the DRA driver, per claim, and the restart check.

Prepare of one claim: read the claim from the API server (kubelet gives namespace/name/UID), plan every device of
our driver (:mod:`vhostplug.dra.claims`, all checks before the first side effect), record what it is about to make
(:mod:`vhostplug.dra.store`), then per device the socket folder and the OVS port in one transaction (the metadata
file and the CDI spec are written while ovs-vswitchd applies it), then the claim's ``status.devices``. Any failure
rolls back what that claim made and answers an error for that claim only. Prepare of a prepared claim answers what
its record says once its ports are checked in OVS; Unprepare removes what the record lists and succeeds for a claim
it never prepared. At start, :meth:`Driver.reconcile` rolls back claims a crash left half-prepared, makes missing
ports of prepared claims again and removes DRA ports no record claims.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vhostplug import fsutil, ovsvhost
from vhostplug.cni.policy import NodePolicy
from vhostplug.cni.spec import CniError
from vhostplug.dra import cdi, claims, metadata
from vhostplug.dra.claims import AllocatedDevice, ClaimError, ClaimPlan
from vhostplug.dra.kubeapi import ApiError, KubeApi
from vhostplug.dra.layout import CDI_KINDS, SOCKET_NAME, ClaimRef, Layout
from vhostplug.dra.store import PREPARED, PREPARING, ClaimRecord, ClaimStore, DeviceRecord
from vhostplug.model import MAX_SOCKET_PATH, Attachment, Mode, NetdevPort, mac_for, port_name_for
from vhostplug.podinfo import devicemetadata
from vhostplug.protocols import Dataplane, DataplaneError, DeviceCatalog
from vhostplug.undo import Undo, roll_back
from vhostplug.vdpa import netdev as vdpa_netdev
from vhostplug.vdpa import sysfs as vdpa_sysfs
from vhostplug.vdpa.attach import VdpaPolicy

LOG = logging.getLogger(__name__)
STATUS_RETRIES = 5
#: what OVS gives a vhost-user port without mtu_request
DEFAULT_MTU = 1500


@dataclass(frozen=True)
class ClaimKey:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PreparedDevice:
    request: str
    pool: str
    device: str
    cdi_device_ids: tuple[str, ...]


@dataclass(frozen=True)
class PrepareResult:
    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


@dataclass
class DriverOptions:
    driver: str
    node: str
    layout: Layout
    policy: NodePolicy
    ownership: fsutil.Ownership = field(default_factory=fsutil.Ownership)
    cdi_version: str = "0.6.0"
    attach_timeout: float = 5.0
    client_socket_wait: float = 3.0
    #: where vDPA devices are found and which pools take them (the devicePlugin.vdpa section); None: no vDPA here
    vdpa: VdpaPolicy | None = None


class Driver:
    def __init__(
        self, dataplane: Dataplane, api: KubeApi, catalog: DeviceCatalog, store: ClaimStore, options: DriverOptions
    ) -> None:
        self.dataplane, self.api, self.catalog, self.store, self.o = dataplane, api, catalog, store, options
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, uid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(uid, threading.Lock())

    # -- Prepare -----------------------------------------------------------------------------------------------
    def prepare(self, keys: list[ClaimKey]) -> dict[str, PrepareResult]:
        out: dict[str, PrepareResult] = {}
        for key in keys:
            try:
                fsutil.check_component(key.uid, "claim UID")
                with self._lock(key.uid):
                    out[key.uid] = self._prepare_one(key)
            except (ClaimError, fsutil.UnsafePathError) as exc:
                out[key.uid] = PrepareResult(error=str(exc))
            except Exception as exc:  # a bug or an outage still answers for this claim only
                LOG.exception("prepare of claim %s/%s (%s) failed", key.namespace, key.name, key.uid)
                out[key.uid] = PrepareResult(error=f"claim {key.namespace}/{key.name}: {exc}")
        return out

    def _prepare_one(self, key: ClaimKey) -> PrepareResult:
        rec = self.store.load(key.uid)
        if rec is not None and rec.phase == PREPARED and self._ports_present(rec):
            return _result(rec)
        if rec is not None:  # half made (a crash), or a port went missing: start again from nothing
            self._remove(rec)
        try:
            claim = self.api.get_claim(key.namespace, key.name)
        except ApiError as exc:
            raise ClaimError(
                f"claim {key.namespace}/{key.name}: reading it from the API server failed: {exc}"
            ) from None
        plan = claims.plan(claim, key.uid, self.o.driver, self.o.node, self.catalog)
        rec = self._record(plan)
        undo: Undo = []
        self.store.save(rec)
        undo.append(lambda: self.store.remove(key.uid))
        try:
            for dev in rec.devices:
                self._make_device(rec, dev, undo)
            self._write_status(claim, plan, rec)
            rec = replace(rec, phase=PREPARED, status_written=True)
            self.store.save(rec)
        except BaseException as exc:
            roll_back(undo, LOG)
            if isinstance(exc, (DataplaneError, ApiError, OSError)):
                raise ClaimError(f"claim {key.namespace}/{key.name}: {exc}") from None
            raise
        return _result(rec)

    def _record(self, plan: ClaimPlan) -> ClaimRecord:
        ref, lay = plan.ref, self.o.layout
        devices = [self._device_record(ref, d) for d in plan.devices]
        kinds = sorted({d.kind for d in devices})
        return ClaimRecord(
            uid=ref.uid,
            namespace=ref.namespace,
            name=ref.name,
            pod_claim_name=ref.pod_claim_name,
            phase=PREPARING,
            devices=tuple(devices),
            cdi_files=tuple(str(lay.cdi_file(ref, k)) for k in kinds),
            metadata_dir=str(lay.metadata_claim_dir(ref)),
        )

    def _device_record(self, ref: ClaimRef, d: AllocatedDevice) -> DeviceRecord:
        lay, cfg = self.o.layout, d.config
        where = f"claim {ref.namespace}/{ref.name}, request {d.request}"
        common: dict[str, Any] = {
            "request": d.request,
            "pool": d.pool,
            "device": d.device,
            "kind": d.catalog.kind,
            "cdi_device_id": lay.cdi_device_id(ref, d.request, d.catalog.kind),
            "metadata_file": str(lay.metadata_file(ref, d.request)),
            "mtu": cfg.mtu,
            "queues": cfg.queues,
        }
        if d.catalog.kind == "vdpa":
            return DeviceRecord(**common, **self._vdpa_fields(where, ref, d))
        try:
            bridge = self.o.policy.bridge(d.catalog.bridge, "bridge")
        except CniError as exc:
            raise ClaimError(f"{where}: device {d.pool}/{d.device}: {exc.msg} ({exc.details})") from None
        folder = lay.host_folder(ref, d.request)
        container_folder = lay.container_folder(ref, d.request)
        for side, path in (("host", f"{folder}/{SOCKET_NAME}"), ("container", f"{container_folder}/{SOCKET_NAME}")):
            if len(path.encode()) > MAX_SOCKET_PATH:
                raise ClaimError(
                    f"{where}: the {side} socket path {path} is {len(path.encode())} bytes; a unix socket path "
                    f"may have {MAX_SOCKET_PATH} (shorten the claim / request names or the socket root)"
                )
        policing = cfg.ingress_policing
        return DeviceRecord(
            **common,
            port_name=port_name_for(ref.uid, d.request),
            folder=str(folder),
            folder_made=True,
            socket_name=SOCKET_NAME,
            container_folder=container_folder,
            mode=cfg.mode.value,
            bridge=bridge,
            mac=mac_for(ref.uid, d.request),
            vlan=cfg.vlan,
            policing_rate=policing.rate_kbps if policing else None,
            policing_burst=policing.burst_kb if policing else None,
        )

    def _vdpa_fields(self, where: str, ref: ClaimRef, d: AllocatedDevice) -> dict[str, Any]:
        """A vhost-vdpa device goes to the container as its character device (CDI ``deviceNodes``); a virtio-vdpa
        device is a kernel netdev, named in the claim status for a CNI to move into the pod. Either way its VF
        representor goes on the bridge (checked here: found, in the switch's namespace, not on a bridge already)."""
        p = self.o.vdpa
        if p is None:
            raise ClaimError(f"{where}: device {d.pool}/{d.device} is a vDPA device; this node has no vDPA pools")
        name = d.catalog.vdpa_device or ""
        try:
            target = vdpa_sysfs.resolve(p.sysfs_root, p.dev_root, name, list(p.pools))
        except vdpa_sysfs.VdpaLookupError as exc:
            raise ClaimError(f"{where}: device {d.pool}/{d.device}: {exc}") from None
        v, rep_name = target.device, target.representor
        held = self.dataplane.get_port(rep_name)
        if held is not None and held.external_ids.get(ovsvhost.ID_DRA_CLAIM) != ref.uid:
            who = held.external_ids.get(ovsvhost.ID_ATTACHMENT) or "something not made by vhostplug"
            raise ClaimError(f"{where}: vDPA device {name} is in use by {who} (representor {rep_name} is on a bridge)")
        rep = vdpa_netdev.get(rep_name, self.dataplane.netdev_namespace())
        if rep is None:
            raise ClaimError(f"{where}: representor {rep_name} of vDPA device {name} is not in the switch's namespace")
        try:
            bridge = self.o.policy.bridge(d.catalog.bridge, "bridge")
        except CniError as exc:
            raise ClaimError(f"{where}: device {d.pool}/{d.device}: {exc.msg} ({exc.details})") from None
        fields: dict[str, Any] = {
            "vdpa_device": name,
            "representor": rep_name,
            "port_name": rep_name,
            "rep_mtu": rep.mtu,
            "rep_up": rep.up,
            "bridge": bridge,
            "vlan": d.config.vlan,
        }
        if v.driver == "vhost" and v.chardev:
            fields.update({"dev_node": f"/dev/{v.chardev}", "dev_node_host": str(v.health_path)})
        else:
            fields["netdev"] = v.netdev or ""
        return fields

    def _netdev_port(self, rec: ClaimRecord, dev: DeviceRecord) -> NetdevPort:
        ids = {
            ovsvhost.ID_ATTACHMENT: f"{rec.uid}/{dev.request}",
            ovsvhost.ID_DRA_CLAIM: rec.uid,
            ovsvhost.ID_DRA_REQUEST: dev.request,
            ovsvhost.ID_VDPA_DEVICE: dev.vdpa_device,
        }
        return NetdevPort(dev.representor, dev.bridge, tuple(sorted(ids.items())), dev.mtu, dev.vlan)

    def _plug_representor(self, rec: ClaimRecord, dev: DeviceRecord, undo: Undo) -> None:
        sw = self.dataplane.netdev_namespace()
        try:
            if dev.mtu:
                vdpa_netdev.set_link(dev.representor, sw, mtu=dev.mtu)
            vdpa_netdev.set_link(dev.representor, sw, state="up")
        except vdpa_netdev.NetdevError as exc:
            raise DataplaneError(str(exc)) from None
        undo.append(lambda: self._restore_representor(dev))
        self.dataplane.attach_netdev(self._netdev_port(rec, dev), timeout=self.o.attach_timeout)
        undo.append(lambda: self.dataplane.detach_netdev(dev.representor))

    def _restore_representor(self, dev: DeviceRecord) -> None:
        changes: dict[str, Any] = {"state": "up" if dev.rep_up else "down"}
        if dev.rep_mtu:
            changes["mtu"] = dev.rep_mtu
        try:
            vdpa_netdev.set_link(dev.representor, self.dataplane.netdev_namespace(), **changes)
        except vdpa_netdev.NetdevError as exc:  # the VF went away meanwhile: nothing to give back
            LOG.warning("representor %s not restored: %s", dev.representor, exc)

    def attachment(self, rec: ClaimRecord, dev: DeviceRecord) -> Attachment:
        """The OVS attachment of a vhost-user device, from its record alone (also used to make it again)."""
        extra = {
            ovsvhost.ID_DRA_CLAIM: rec.uid,
            ovsvhost.ID_DRA_REQUEST: dev.request,
            ovsvhost.ID_FOLDER: dev.folder,
            ovsvhost.ID_FOLDER_OWNED: "true",
        }
        return Attachment(
            container_id=rec.uid,
            ifname=dev.request,
            port_name=dev.port_name,
            socket_dir=Path(dev.folder),
            socket_name=dev.socket_name,
            mode=Mode(dev.mode),
            bridge=dev.bridge,
            mac=dev.mac,
            mtu=dev.mtu,
            vlan=dev.vlan,
            device_id=f"{dev.pool}/{dev.device}",
            iface_id=f"{rec.namespace}/{rec.name}/{dev.request}",
            extra_ids=tuple(sorted(extra.items())),
            may_create_bridge=self.o.policy.may_create_bridges,
            datapath_type=self.o.policy.datapath_type,
            ingress_policing_rate=dev.policing_rate,
            ingress_policing_burst=dev.policing_burst,
        )

    def _make_device(self, rec: ClaimRecord, dev: DeviceRecord, undo: Undo) -> None:
        if dev.kind != "vhostuser":  # vDPA: the representor on the bridge, then the files
            self._plug_representor(rec, dev, undo)
            self._write_files(rec, dev, undo)
            return
        folder = Path(dev.folder)
        own = self.o.ownership
        folder.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if not fsutil.ensure_dir(folder, own):  # ours by name (from the claim UID): what a crashed attempt left goes
            fsutil.empty_dir(folder)
        undo.append(lambda: fsutil.remove_dir(folder))
        att = self.attachment(rec, dev)
        stale = self.dataplane.get_port(att.port_name)
        if stale is not None:  # left by a crashed attempt of this claim; anything else of that name is not ours
            if stale.external_ids.get(ovsvhost.ID_DRA_CLAIM) != rec.uid:
                raise DataplaneError(f"OVS port {att.port_name} exists and is not this claim's")
            self.dataplane.detach(att.port_name)

        def meanwhile() -> None:
            self._write_files(rec, dev, undo)

        self.dataplane.attach(att, timeout=self.o.attach_timeout, meanwhile=meanwhile)
        undo.append(lambda: self.dataplane.detach(att.port_name))
        if att.mode is Mode.CLIENT:
            try:
                self.dataplane.place_client_socket(att, own, self.o.client_socket_wait)
            except DataplaneError:
                # the agent's relocator moves every socket OVS makes to its port's place (vhostplug-socket), and
                # may have been first: then it is where it belongs
                if not fsutil.is_socket(att.socket_path):
                    raise

    def _write_files(self, rec: ClaimRecord, dev: DeviceRecord, undo: Undo) -> None:
        """The device's metadata file and its claim's CDI spec (rewritten with every device made so far)."""
        ref = ClaimRef(rec.namespace, rec.name, rec.uid, rec.pod_claim_name)
        lay = self.o.layout
        meta_path = Path(dev.metadata_file)
        undo.append(lambda: metadata.remove_claim_dir(Path(rec.metadata_dir)))
        text = metadata.document(ref, dev.request, self.o.driver, dev.pool, dev.device, device_attributes(dev))
        metadata.write(meta_path, text)
        kind = dev.kind
        devices = [d for d in rec.devices if d.kind == kind]
        done = devices[: devices.index(dev) + 1]
        spec = cdi.spec(self.o.cdi_version, CDI_KINDS[kind], [self._cdi_device(ref, d) for d in done])
        path = lay.cdi_file(ref, kind)
        cdi.write(path, spec)
        undo.append(lambda: cdi.remove(path))

    def _cdi_device(self, ref: ClaimRef, dev: DeviceRecord) -> cdi.CdiDevice:
        lay = self.o.layout
        meta = cdi.Mount(dev.metadata_file, lay.metadata_container_file(ref, dev.request), read_only=True)
        name = lay.cdi_device_name(ref, dev.request)
        if dev.kind != "vhostuser":
            nodes = (cdi.DeviceNode(dev.dev_node, dev.dev_node_host),) if dev.dev_node else ()
            return cdi.CdiDevice(name=name, mounts=(meta,), device_nodes=nodes)
        return cdi.CdiDevice(name=name, mounts=(cdi.Mount(dev.folder, dev.container_folder), meta))

    # -- the claim's status (KEP-4817) -------------------------------------------------------------------------
    def _write_status(self, claim: dict[str, Any], plan: ClaimPlan, rec: ClaimRecord) -> None:
        ours = [status_entry(self.o.driver, d) for d in rec.devices]
        self._update_status(claim, lambda entries: [e for e in entries if e.get("driver") != self.o.driver] + ours)

    def _update_status(
        self, claim: dict[str, Any], change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
    ) -> None:
        meta = claim["metadata"]
        for attempt in range(STATUS_RETRIES):
            status = claim.setdefault("status", {})
            status["devices"] = change(list(status.get("devices") or []))
            if not status["devices"]:
                status.pop("devices")
            try:
                self.api.replace_claim_status(claim)
                return
            except ApiError as exc:  # 409: someone else wrote it since we read it; read it again and redo ours
                if exc.code != 409 or attempt == STATUS_RETRIES - 1:
                    raise
            claim = self.api.get_claim(meta["namespace"], meta["name"])
            if claim.get("metadata", {}).get("uid") != meta.get("uid"):
                raise ApiError(409, f"claim {meta['namespace']}/{meta['name']} was replaced meanwhile")

    # -- Unprepare ---------------------------------------------------------------------------------------------
    def unprepare(self, keys: list[ClaimKey]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in keys:
            try:
                fsutil.check_component(key.uid, "claim UID")
                with self._lock(key.uid):
                    self._unprepare_one(key)
                with self._locks_guard:  # kubelet serialises the calls of one claim: its lock can go
                    self._locks.pop(key.uid, None)
                out[key.uid] = ""
            except Exception as exc:
                LOG.warning("unprepare of claim %s/%s (%s) failed: %s", key.namespace, key.name, key.uid, exc)
                out[key.uid] = f"claim {key.namespace}/{key.name}: {exc}"
        return out

    def _unprepare_one(self, key: ClaimKey) -> None:
        rec = self.store.load(key.uid)
        if rec is None:  # never prepared here (or already unprepared): only a port tagged with it could be ours
            for port in self.dataplane.list_ports():
                if port.external_ids.get(ovsvhost.ID_DRA_CLAIM) == key.uid:
                    self.dataplane.detach(port.name)
            return
        self._remove(rec)
        if rec.status_written:
            self._clear_status(rec)

    def _remove(self, rec: ClaimRecord) -> None:
        """Remove everything ``rec`` lists (what is already gone is skipped), then the record."""
        for dev in rec.devices:
            if dev.port_name:
                port = self.dataplane.get_port(dev.port_name)
                if port is not None and port.external_ids.get(ovsvhost.ID_DRA_CLAIM) == rec.uid:
                    if dev.representor:
                        self.dataplane.detach_netdev(dev.port_name)
                    else:
                        self.dataplane.detach(dev.port_name)
            if dev.representor:
                self._restore_representor(dev)
            if dev.folder and dev.folder_made:
                fsutil.remove_dir(Path(dev.folder))
        for f in rec.cdi_files:
            cdi.remove(Path(f))
        if rec.metadata_dir:
            metadata.remove_claim_dir(Path(rec.metadata_dir))
        self.store.remove(rec.uid)

    def _clear_status(self, rec: ClaimRecord) -> None:
        """Best effort: take our entries out of ``status.devices`` (the claim may be gone already)."""
        try:
            claim = self.api.get_claim(rec.namespace, rec.name)
            if claim.get("metadata", {}).get("uid") != rec.uid:
                return
            if not any(e.get("driver") == self.o.driver for e in (claim.get("status") or {}).get("devices") or []):
                return
            self._update_status(claim, lambda entries: [e for e in entries if e.get("driver") != self.o.driver])
        except ApiError as exc:
            if exc.code != 404:
                LOG.warning("claim %s/%s: could not take our status.devices out: %s", rec.namespace, rec.name, exc)

    # -- after a restart ---------------------------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Check the claim store against OVS: roll back half-prepared claims, make missing ports of prepared claims
        again, remove DRA ports that no record claims. Returns counts for the log."""
        counts = {"rolled_back": 0, "ports_remade": 0, "orphans_removed": 0, "prepared": 0}
        records = self.store.all()
        for rec in records:
            if rec.phase != PREPARED:
                self._remove(rec)
                counts["rolled_back"] += 1
                continue
            counts["prepared"] += 1
            for dev in rec.devices:
                if not dev.port_name or self._port_ok(rec, dev):
                    continue
                try:
                    if self.dataplane.get_port(dev.port_name) is not None:
                        self.dataplane.detach(dev.port_name)
                    if dev.kind == "vdpa":
                        self.dataplane.attach_netdev(self._netdev_port(rec, dev), timeout=self.o.attach_timeout)
                        counts["ports_remade"] += 1
                        continue
                    fsutil.ensure_dir(Path(dev.folder), self.o.ownership)
                    self.dataplane.attach(self.attachment(rec, dev), timeout=self.o.attach_timeout)
                    counts["ports_remade"] += 1
                except (DataplaneError, OSError) as exc:
                    LOG.warning(
                        "claim %s/%s: could not make port %s again: %s", rec.namespace, rec.name, dev.port_name, exc
                    )
        known = {r.uid for r in records if r.phase == PREPARED}
        for port in self.dataplane.list_ports():
            uid = port.external_ids.get(ovsvhost.ID_DRA_CLAIM)
            if uid is not None and uid not in known:
                self.dataplane.detach(port.name)
                counts["orphans_removed"] += 1
        return counts

    def _port_ok(self, rec: ClaimRecord, dev: DeviceRecord) -> bool:
        port = self.dataplane.get_port(dev.port_name)
        return port is not None and port.external_ids.get(ovsvhost.ID_DRA_CLAIM) == rec.uid

    def _ports_present(self, rec: ClaimRecord) -> bool:
        return all(self._port_ok(rec, d) for d in rec.devices if d.port_name)


def _result(rec: ClaimRecord) -> PrepareResult:
    return PrepareResult(
        devices=tuple(PreparedDevice(d.request, d.pool, d.device, (d.cdi_device_id,)) for d in rec.devices)
    )


def device_attributes(dev: DeviceRecord) -> dict[str, str | int | bool]:
    """The KEP-5304 metadata attributes of a prepared device: ``vhost-user-path``, ``mtu`` and ``vhost-user-mode`` are
    what KubeVirt's vhost-user binding and our sidecar read (:mod:`vhostplug.podinfo.devicemetadata`); ``mtu`` is always
    there (OVS's 1500 when the claim sets none)."""
    attrs: dict[str, str | int | bool] = {"kind": dev.kind, devicemetadata.ATTR_MTU: dev.mtu or DEFAULT_MTU}
    if dev.kind == "vhostuser":
        attrs[devicemetadata.ATTR_VHOST_USER_PATH] = f"{dev.container_folder}/{dev.socket_name}"
        attrs[devicemetadata.ATTR_VHOST_USER_MODE] = dev.mode
        attrs["bridge"] = dev.bridge
        attrs["mac"] = dev.mac
    if dev.queues is not None:
        attrs["queues"] = dev.queues
    if dev.kind == "vdpa":
        attrs["vdpa-device"] = dev.vdpa_device
        if dev.dev_node:
            attrs["vhost-vdpa-path"] = dev.dev_node
        if dev.netdev:
            attrs["netdev"] = dev.netdev
    return attrs


def status_entry(driver: str, dev: DeviceRecord) -> dict[str, Any]:
    """One ``status.devices[]`` entry (KEP-4817): ``data`` for people and tools, ``networkData`` as the API wants."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data: dict[str, Any] = {"kind": dev.kind, "cdiDeviceID": dev.cdi_device_id}
    network: dict[str, Any] = {}
    if dev.kind == "vhostuser":
        data.update(
            {
                "hostFolder": dev.folder,
                "hostSocket": f"{dev.folder}/{dev.socket_name}",
                "containerFolder": dev.container_folder,
                "containerSocket": f"{dev.container_folder}/{dev.socket_name}",
                "mode": dev.mode,
                "bridge": dev.bridge,
                "port": dev.port_name,
            }
        )
        network = {"interfaceName": dev.port_name, "hardwareAddress": dev.mac}
    else:
        data["vdpaDevice"] = dev.vdpa_device
        if dev.dev_node:
            data.update({"devNode": dev.dev_node, "hostDevNode": dev.dev_node_host})
        if dev.netdev:
            data["netdev"] = dev.netdev
            network = {"interfaceName": dev.netdev}
        if dev.representor:
            data.update({"representor": dev.representor, "bridge": dev.bridge})
    for key, value in (("mtu", dev.mtu), ("vlan", dev.vlan), ("queues", dev.queues)):
        if value is not None:
            data[key] = value
    entry: dict[str, Any] = {
        "driver": driver,
        "pool": dev.pool,
        "device": dev.device,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Prepared",
                "message": "OVS port made and checked" if dev.kind == "vhostuser" else "device handed to the container",
                "lastTransitionTime": now,
            }
        ],
        "data": data,
    }
    if network:
        entry["networkData"] = network
    return entry
