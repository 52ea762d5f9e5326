"""The CNI verbs (ADD, DEL, CHECK, STATUS, GC) as the node agent runs them against a dataplane.

The verbs speak in attachments: what to make comes from :mod:`vhostplug.cni.planning`, the switch (and its client-mode
sockets) is behind the :class:`~vhostplug.protocols.Dataplane` seam. ADD validates everything before its first side
effect and keeps an undo list, so any failure leaves nothing behind; it stores what it made in the agent's record
(:mod:`vhostplug.cni.records`) and on the port's external_ids, and DEL and GC work from those alone, never from the
network config, across agent restarts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vhostplug import deadline, deviceinfo, fsutil, ovsvhost
from vhostplug.cni import ipam, netconf, planning, records
from vhostplug.cni import vdpa as vdpa_verbs
from vhostplug.cni.netconf import NetConf
from vhostplug.cni.planning import Plan
from vhostplug.cni.policy import NodePolicy
from vhostplug.cni.records import FolderPrior, Record, RecordStore
from vhostplug.cni.spec import (
    DATAPLANE_FAILURE,
    INVALID_CONFIG,
    IO_FAILURE,
    LATEST,
    STATUS_UNAVAILABLE,
    TRY_AGAIN_LATER,
    UNSAFE_PATH,
    CniEnv,
    CniError,
    check_container_id,
    check_ifname,
    convert_ips,
    convert_result,
    interface_entry,
    negotiate,
    require_verb,
)
from vhostplug.kuryr import cni as kuryr_cni
from vhostplug.model import (
    DataplaneHealth,
    Mode,
    VhostUserPort,
    attachment_key,
    port_name_for,
)
from vhostplug.protocols import Dataplane, DataplaneError, DataplaneUnavailable, SocketPlacementError
from vhostplug.undo import Undo, roll_back
from vhostplug.vdpa.attach import VdpaPolicy

LOG = logging.getLogger(__name__)


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


class CniHandler:
    def __init__(self, dataplane: Dataplane, options: HandlerOptions | None = None) -> None:
        self.dataplane = dataplane
        self.options = options or HandlerOptions()
        self.records = RecordStore(self.options.state_dir)
        self._lock = threading.Lock()
        #: port name -> attachment key of ADDs that failed while their port's transaction may still land (OVSDB
        #: hung): the relocator's tick removes such a port once OVSDB answers, unless a later ADD made it its own
        self._orphans: dict[str, str] = {}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The handler's lock, waited for at most until the current request's deadline (then code 11: the request
        has done nothing yet, and will not later)."""
        wait = deadline.current().remaining()
        if not self._lock.acquire(timeout=wait if wait < threading.TIMEOUT_MAX else -1):
            raise CniError(
                TRY_AGAIN_LATER,
                "the vhostplug agent is busy with other requests",
                "the switch may be slow or not answering; try again later",
            )
        try:
            yield
        finally:
            self._lock.release()

    # -- entry -------------------------------------------------------------------------------------------------
    def handle(self, env: dict[str, str], raw_conf: dict[str, Any]) -> tuple[int, str]:
        """Run one CNI call on a decoded request (:func:`vhostplug.cni.wire.decode_request` decodes the JSON once);
        return (exit code, stdout) with the spec's error JSON on failure.

        ADD, CHECK and STATUS validate the network configuration strictly. DEL and GC do not: they work from what
        ADD stored (see :mod:`vhostplug.cni.records`), so a config edited or broken since ADD never strands a pod.
        """
        asked = raw_conf.get("cniVersion")
        version = asked if isinstance(asked, str) else LATEST
        try:
            command = env.get("CNI_COMMAND", "")
            result: dict[str, Any] | None
            if command == "DEL":
                self.delete(_forgiving_env(env), raw_conf)
                result = None
            elif command == "GC":
                self.gc(_forgiving_env(env), raw_conf)
                result = None
            else:
                cni_env = CniEnv.from_env(env)
                conf, raw = netconf.parse(raw_conf), raw_conf
                version = negotiate(conf.cni_version, conf.cni_versions)
                require_verb(cni_env.command, version)
                verb: Callable[[CniEnv, NetConf, dict[str, Any], str], dict[str, Any] | None] = {
                    "ADD": self.add,
                    "CHECK": self.check,
                    "STATUS": self.status,
                }[cni_env.command]
                if conf.device == "vdpa":
                    verb = self._vdpa_verb
                result = verb(cni_env, conf, raw, version)
                if result is not None:  # built in the 1.x shape: in the asked version's shape on the way out
                    result = convert_result(result, version)
        except CniError as err:
            return 1, json.dumps(err.to_json(version))
        except DataplaneUnavailable as exc:
            return 1, json.dumps(CniError(TRY_AGAIN_LATER, "the dataplane is unavailable", str(exc)).to_json(version))
        except fsutil.UnsafePathError as exc:  # a path check deep in a step: still the unsafe-path code
            return 1, json.dumps(CniError(UNSAFE_PATH, "refusing an unsafe path", str(exc)).to_json(version))
        except Exception as exc:  # an agent bug must still answer in the spec's format
            LOG.exception("unexpected error")
            return 1, json.dumps(
                CniError(IO_FAILURE, "internal error in the vhostplug agent", repr(exc)).to_json(version)
            )
        return 0, json.dumps(result) if result is not None else ""

    # -- vDPA (vhostplug.vdpa; DEL and GC find its attachments by their records, see _forget) ----------------------
    def _vdpa_verb(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> dict[str, Any] | None:
        if env.command == "STATUS":
            self.status(env, conf, raw, version)
            vdpa_verbs.status(self.options.vdpa)
            return None
        conf = self._vdpa_within_policy(conf)
        att = vdpa_verbs.attacher(self.dataplane, self.options.vdpa, self.options.attach_timeout)
        with self._locked():
            if env.command == "ADD":
                result = vdpa_verbs.add(att, env, conf, raw, version, self._ipam_env, self.records)
                if not deadline.current().finish():  # its caller was answered "try again": undo it as DEL would
                    LOG.warning("vDPA ADD of %s outlived its deadline: undoing what it made", env.container_id)
                    self._release_ipam(env, self._forget(env.container_id, env.ifname, []), raw)
                    raise CniError(TRY_AGAIN_LATER, "the vDPA ADD finished after its caller was answered")
                return result
            vdpa_verbs.check(att, env, conf, raw, self._ipam_env, self.records)
        return None

    def _vdpa_within_policy(self, conf: NetConf) -> NetConf:
        """The node policy's say on a vDPA network: its bridge, device-info file and IPAM plugin."""
        policy = self.options.policy
        if conf.ipam is not None:
            policy.ipam_plugin(conf.ipam.get("type"))
        if conf.device_info_file is not None:
            policy.devinfo_file(conf.device_info_file)
        return conf.model_copy(update={"bridge": policy.bridge(conf.bridge)})

    # -- planning ----------------------------------------------------------------------------------------------
    def plan(self, env: CniEnv, conf: NetConf, raw: dict[str, Any]) -> Plan:
        record = self.records.load(env.container_id, env.ifname)
        recorded = record.folder if record is not None else None
        return planning.plan(planning.PlanInput(env, conf, raw, self.options.policy, recorded))

    def _check_device_free(self, plan: Plan) -> None:
        """A device folder serves one attachment at a time: refuse one another container's record names."""
        att = plan.attachment
        if not plan.folder_is_device or not att.device_id:
            return
        for rec in self.records.all():
            if rec.folder == str(plan.folder) and rec.key != att.key:
                raise CniError(
                    INVALID_CONFIG,
                    f"deviceID {att.device_id!r} is attached to another container ({rec.key})",
                    "each device of the device plugin serves one attachment",
                )

    # -- ADD ---------------------------------------------------------------------------------------------------
    def add(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> dict[str, Any]:
        plan = self.plan(env, conf, raw)
        att = plan.attachment
        undo: Undo = []
        with self._locked():
            again = self._repeated(plan, conf)
            if again is not None:  # a repeated ADD of a live attachment: the first ADD's answer, nothing redone
                deadline.current().finish()
                return self._result(version, env, conf, again.mac or att.mac, plan, again.ipam_result or {})
            self._check_device_free(plan)
            self._clear_leftover(att.port_name, att.key)
            try:
                ipam_result, record = self._add_steps(env, conf, raw, plan, undo)
                self.records.save(replace(record, ipam_result=ipam_result))
                if not deadline.current().finish():
                    raise CniError(TRY_AGAIN_LATER, f"ADD of {att.key} finished after its caller was answered")
            except BaseException as exc:
                if deadline.current().abandoned:
                    LOG.warning("ADD of %s outlived its deadline (%s): undoing what it made", att.key, exc)
                roll_back(undo, LOG)
                raise
        return self._result(version, env, conf, att.mac, plan, ipam_result)

    def _result(
        self, version: str, env: CniEnv, conf: NetConf, mac: str, plan: Plan, ipam_result: dict[str, Any]
    ) -> dict[str, Any]:
        """ADD's result; with a ``prevResult`` (a chained ADD) the previous plugins' result extended by ours."""
        att = plan.attachment
        prev = conf.prev_result if isinstance(conf.prev_result, dict) else {}
        interfaces = [i for i in prev.get("interfaces") or [] if isinstance(i, dict)]
        ours = convert_ips(version, ipam_result.get("ips", []))
        socket = str(att.socket_path)
        for ip in ours:
            ip["interface"] = len(interfaces)
        result: dict[str, Any] = {
            "cniVersion": version,
            "interfaces": [*interfaces, interface_entry(version, att.ifname, mac, env.netns, socket, att.mtu)],
            "ips": [*(i for i in prev.get("ips") or [] if isinstance(i, dict)), *ours],
        }
        routes = [*(prev.get("routes") or []), *(ipam_result.get("routes") or [])]
        if routes:
            result["routes"] = routes
        dns = ipam_result.get("dns") or conf.dns or prev.get("dns")
        if dns:
            result["dns"] = dns
        return result

    def _repeated(self, plan: Plan, conf: NetConf) -> Record | None:
        """Caller holds the lock. The record of a live attachment this ADD repeats (its port still ours), None for
        a first ADD; CniError 7 when the repeat asks for something else than the first ADD made. A record whose port
        is gone is stale: what it lists is removed first, and the ADD starts afresh."""
        att = plan.attachment
        record = self.records.load(att.container_id, att.ifname)
        if record is None:
            return None
        port = self.dataplane.get_port(record.port_name)
        if port is None or port.attachment_key != att.key:
            LOG.info("ADD of %s: its record names port %s, which is gone: starting afresh", att.key, record.port_name)
            self._forget(att.container_id, att.ifname, [record.port_name])
            return None
        first = (record.network, record.port_name, port.ovs_type, record.folder, record.socket_name, record.mac or att.mac)
        now = (conf.name, att.port_name, att.mode.ovs_type, str(plan.folder), att.socket_name, att.mac)
        if first != now:
            raise CniError(
                INVALID_CONFIG,
                f"attachment {att.key} exists, made by an ADD with another configuration",
                f"it has network, port, type, folder, socket, MAC {first}; this ADD asks for {now}; DEL it first",
            )
        return record

    def _add_steps(
        self, env: CniEnv, conf: NetConf, raw: dict[str, Any], plan: Plan, undo: Undo
    ) -> tuple[dict[str, Any], Record]:
        att = plan.attachment
        own = self.options.ownership
        health = self.dataplane.ready()
        if not health.ok:
            raise CniError(TRY_AGAIN_LATER, "the dataplane is not ready", health.detail)
        root = plan.folder.parent
        try:
            if not root.exists():
                root.mkdir(parents=True, mode=0o755)
            prior = _folder_prior(plan.folder)
            made = fsutil.ensure_dir(plan.folder, own)
        except fsutil.UnsafePathError as exc:
            raise CniError(UNSAFE_PATH, f"refusing the socket folder: {exc}") from None
        if made:
            undo.append(lambda: fsutil.remove_dir(plan.folder))
        elif prior is not None:
            undo.append(lambda: _restore_folder(plan.folder, prior))
        record = Record(
            container_id=att.container_id,
            ifname=att.ifname,
            network=conf.name,
            port_name=att.port_name,
            folder=str(plan.folder),
            folder_made=made,
            socket_name=att.socket_name,
            config_file=plan.config_file_name,
            folder_prior=None if made else prior,
            devinfo_file=plan.device_info_file,
            ipam_conf=_ipam_conf(raw) if conf.ipam else None,
            cni_path=env.path,
            mac=att.mac,
        )
        self.records.save(record)
        undo.append(lambda: self.records.remove(att.container_id, att.ifname))
        # a socket left by an earlier user of this folder would make the app's bind fail
        self._unlink_socket(plan.folder, att.socket_name)
        ipam_result: dict[str, Any] = {}
        if conf.ipam:  # started now, its result collected below: the plugin starts up while the port is made
            ipam_env = self._ipam_env(env, att.container_id, att.ifname)
            running = ipam.Running("ADD", raw, ipam_env, env.path)

            def release() -> None:
                running.reap()
                ipam.delegate("DEL", raw, ipam_env, env.path)

            undo.append(release)

        def meanwhile() -> None:
            """What does not need the port, done while the switch applies it: IPAM's result and the files."""
            nonlocal ipam_result
            if conf.ipam:
                ipam_result = running.result()
            app_conf = {"vhostname": att.socket_name, "vhostmac": att.mac, "mode": att.mode.value}
            fsutil.write_json_in(plan.folder, plan.config_file_name, app_conf, mode=0o644, own=own)
            undo.append(lambda: fsutil.unlink_in(plan.folder, plan.config_file_name))
            if plan.device_info_file:
                path = Path(plan.device_info_file)
                deviceinfo.write_at(path, deviceinfo.vhost_user(att.mode, plan.container_socket_path))
                undo.append(lambda: fsutil.unlink_in(path.parent, path.name))

        try:
            self._orphans[att.port_name] = att.key  # until the ADD stands (see sweep_orphans)
            undo.append(lambda: self._sweep_orphan(att.port_name))
            self.dataplane.attach(att, timeout=self.options.attach_timeout, meanwhile=meanwhile)
            undo.append(lambda: self.dataplane.detach(att.port_name))
            if att.mode is Mode.CLIENT:
                undo.append(lambda: self._unlink_socket(plan.folder, att.socket_name))
                self.dataplane.place_client_socket(att, own, self.options.client_socket_wait)
            undo.append(lambda: self._orphans.__setitem__(att.port_name, att.key))
            self._orphans.pop(att.port_name, None)
        except DataplaneUnavailable:
            raise
        except SocketPlacementError as exc:
            raise CniError(IO_FAILURE, str(exc)) from None
        except DataplaneError as exc:
            raise CniError(DATAPLANE_FAILURE, str(exc)) from None
        return ipam_result, record

    @staticmethod
    def _ipam_env(env: CniEnv, container_id: str, ifname: str) -> dict[str, str]:
        out = {"CNI_CONTAINERID": container_id, "CNI_IFNAME": ifname, "CNI_PATH": ":".join(env.path)}
        if env.netns:
            out["CNI_NETNS"] = env.netns
        if env.args:
            # the pod's args were not meant for the IPAM plugin: tell it to ignore the ones it does not know
            args = {"IgnoreUnknown": "1", **env.args}
            out["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in args.items())
        return out

    # -- ports of ADDs that failed while OVSDB hung ------------------------------------------------------------
    def sweep_orphans(self) -> list[str]:
        """The relocator's tick: remove the ports of failed ADDs that OVSDB applied after all; return their names."""
        if not self._orphans:
            return []
        with self._locked():
            return [name for name in list(self._orphans) if self._sweep_orphan(name)]

    def _clear_leftover(self, port_name: str, key: str) -> None:
        """Caller holds the lock, and no record of ``key`` exists: a port of ``key`` is then what an earlier ADD left
        that did not stand (failed, killed, or applied late by OVSDB). Removed, so the ADD makes everything anew
        (reusing it would skip the IPAM result and the files)."""
        self._orphans.pop(port_name, None)
        port = self.dataplane.get_port(port_name)
        if port is not None and port.attachment_key == key:
            LOG.info("ADD of %s: removing port %s, left by an earlier ADD that did not stand", key, port_name)
            self.dataplane.detach(port_name)

    def _sweep_orphan(self, port_name: str) -> bool:
        """Caller holds the lock. Remove the port ``port_name`` that a failed ADD may have left (an ADD that stands
        takes its port off the list); forget it once OVSDB said where it stands. True when a port was removed."""
        key = self._orphans.get(port_name)
        if key is None:
            return False
        try:
            port = self.dataplane.get_port(port_name)
            removed = False
            if port is not None and port.attachment_key == key:
                removed = self.dataplane.detach(port_name)
                LOG.info("removed port %s of a failed ADD of %s (OVSDB applied it late)", port_name, key)
        except DataplaneError as exc:  # OVSDB still not answering: next tick
            LOG.debug("port %s of a failed ADD: %s", port_name, exc)
            return False
        self._orphans.pop(port_name, None)
        return removed

    # -- client mode: the relocator's tick ------------------------------------------------------------------
    def relocate_client_sockets(self) -> list[str]:
        """Move sockets that the switch re-created (after its restart) back into the pods' folders."""
        with self._locked():
            return self.dataplane.return_client_sockets(self.options.ownership)

    @staticmethod
    def _unlink_socket(folder: Path, name: str) -> bool:
        path = folder / name
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode):
            return fsutil.unlink_in(folder, name)
        return False

    # -- DEL ---------------------------------------------------------------------------------------------------
    def delete(self, env: CniEnv, raw: dict[str, Any] | None) -> None:
        """Remove what ADD made for (CNI_CONTAINERID, CNI_IFNAME), found from the agent's record or the port's
        external_ids, never from the network config (which may have changed or broken since ADD)."""
        check_container_id(env.container_id)
        check_ifname(env.ifname)
        with self._locked():
            record = self._forget(env.container_id, env.ifname, self._port_candidates(env, raw))
        self._release_ipam(env, record, raw)
        return None

    def _port_candidates(self, env: CniEnv, raw: dict[str, Any] | None) -> list[str]:
        names = [port_name_for(env.container_id, env.ifname)]
        if raw is not None:  # a kuryr port is named by Neutron: its name is in the input, if the input still parses
            with contextlib.suppress(Exception):
                binding = kuryr_cni.from_cni(raw, env.args, env.ifname)
                if binding is not None:
                    names.append(binding.port_name)
        return names

    def _forget(self, cid: str, ifname: str, port_names: list[str]) -> Record | None:
        """Detach the attachment's port and remove what its record lists; return the record (None: none found).

        Caller holds the lock. Raises CniError(UNSAFE_PATH) naming a stored path that is no longer safe to touch
        (then that path and the record are left as they are, for a later DEL).
        """
        key = attachment_key(cid, ifname)
        record = self.records.load(cid, ifname)
        names = [record.port_name] if record is not None else port_names
        port: VhostUserPort | None = None
        for name in names:
            found = self.dataplane.get_port(name)
            if found is not None and found.attachment_key == key:
                port = found
                break
        if record is None and port is not None:
            record = _record_from_port(port)
        if port is not None and vdpa_verbs.is_vdpa(port):
            vdpa_verbs.undo(self.dataplane, self.options.vdpa, port)  # its netdev back to the host, then the port
        elif port is not None:
            self.dataplane.detach(port.name)
        if record is not None:
            self._remove_made(record)
            self.records.remove(cid, ifname)
        return record

    def _remove_made(self, record: Record) -> None:
        folder = Path(record.folder)
        try:
            if record.socket_name:
                self._unlink_socket(folder, record.socket_name)
            if record.config_file:
                fsutil.unlink_in(folder, record.config_file)
            if record.devinfo_file:
                p = Path(record.devinfo_file)
                fsutil.unlink_in(p.parent, p.name)
            if record.folder_made:
                _rmdir_if_empty(folder)
            elif record.folder_prior is not None:
                _restore_folder(folder, record.folder_prior)
        except fsutil.UnsafePathError as exc:
            raise CniError(
                UNSAFE_PATH,
                f"not removing what {record.key} left: {exc}",
                "the path is left as it is; remove it by hand, then DEL succeeds",
            ) from None

    def _release_ipam(self, env: CniEnv, record: Record | None, raw: dict[str, Any] | None) -> None:
        """Best effort: free the address with what ADD stored (else with the config at hand, if it names IPAM)."""
        conf = record.ipam_conf if record is not None else None
        if conf is None and raw is not None and isinstance(raw.get("ipam"), dict) and record is None:
            if raw["ipam"].get("type") not in self.options.policy.ipam_plugins:
                return
            conf = _ipam_conf(raw)
        if not conf:
            return
        cni_path = env.path or (record.cni_path if record is not None else ())
        cid = record.container_id if record is not None else env.container_id
        ifname = record.ifname if record is not None else env.ifname
        try:
            ipam.delegate("DEL", conf, self._ipam_env(env, cid, ifname), cni_path)
        except CniError as exc:
            LOG.warning(
                "IPAM release of %s failed (left to the IPAM plugin's own GC): %s", attachment_key(cid, ifname), exc
            )

    # -- CHECK -------------------------------------------------------------------------------------------------
    def check(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None:
        if conf.prev_result is None:
            raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
        plan = self.plan(env, conf, raw)
        att = plan.attachment
        health = self.dataplane.health()
        if not health.ok:
            raise CniError(TRY_AGAIN_LATER, "the dataplane is not ready", health.detail)
        port = self.dataplane.get_port(att.port_name)
        if port is None:
            raise CniError(DATAPLANE_FAILURE, f"OVS port {att.port_name} of {att.key} is missing")
        if port.attachment_key != att.key:
            raise CniError(
                DATAPLANE_FAILURE, f"OVS port {att.port_name} belongs to {port.attachment_key}, not {att.key}"
            )
        if port.ovs_type != att.mode.ovs_type:
            raise CniError(
                DATAPLANE_FAILURE, f"OVS port {att.port_name} is {port.ovs_type}, expected {att.mode.ovs_type}"
            )
        try:
            st = os.lstat(plan.folder)
        except FileNotFoundError:
            raise CniError(IO_FAILURE, f"socket folder {plan.folder} is missing") from None
        if not stat.S_ISDIR(st.st_mode):
            raise CniError(UNSAFE_PATH, f"socket folder {plan.folder} is not a real folder")
        if att.mode is Mode.CLIENT and not fsutil.is_socket(att.socket_path):
            raise CniError(IO_FAILURE, f"client-mode socket {att.socket_path} is missing")
        prev = [i for i in conf.prev_result.get("interfaces", []) if i.get("name") == att.ifname]
        if not prev:
            raise CniError(INVALID_CONFIG, f"prevResult has no interface {att.ifname}")
        if prev[0].get("mac") and prev[0]["mac"] != att.mac:
            raise CniError(DATAPLANE_FAILURE, f"interface MAC {att.mac} differs from prevResult's {prev[0]['mac']}")
        if prev[0].get("socketPath") and prev[0]["socketPath"] != str(att.socket_path):
            raise CniError(
                DATAPLANE_FAILURE, f"socket {att.socket_path} differs from prevResult's {prev[0]['socketPath']}"
            )
        if conf.ipam:
            ipam.delegate("CHECK", raw, self._ipam_env(env, env.container_id, env.ifname), env.path)
        return None

    # -- STATUS ------------------------------------------------------------------------------------------------
    def readiness(self) -> DataplaneHealth:
        """Whether ADD can work now: the switch answers and is initialised, and, where the node's policy lets the
        agent make no bridges, each allowed bridge exists (STATUS and the agent's readiness probe)."""
        policy = self.options.policy
        return self.dataplane.health(() if policy.may_create_bridges else policy.bridges)

    def status(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None:
        health = self.readiness()
        if not health.ok:
            raise CniError(STATUS_UNAVAILABLE, "vhostplug cannot add attachments now", health.detail)
        return None

    # -- GC ----------------------------------------------------------------------------------------------------
    def gc(self, env: CniEnv, raw: dict[str, Any] | None) -> None:
        """Remove every attachment of this network that is not in the keep list, from ports and records alike."""
        name = raw.get("name") if raw is not None else None
        asked = raw.get("cniVersion") if raw is not None else None
        require_verb("GC", asked if isinstance(asked, str) else "")
        if not isinstance(name, str) or not name:
            raise CniError(INVALID_CONFIG, "GC needs the network's name in the configuration")
        keep = _keep_list(raw or {})
        unsafe: list[str] = []
        with self._locked():
            stale: dict[str, tuple[str, str, list[str]]] = {}
            for port in self.dataplane.list_ports():
                ids = port.external_ids
                if ids.get(ovsvhost.ID_NETWORK) == name and port.attachment_key not in keep:
                    cid, ifname = ids.get(ovsvhost.ID_CONTAINER, ""), ids.get(ovsvhost.ID_IFNAME, "")
                    stale[attachment_key(cid, ifname)] = (cid, ifname, [port.name])
            for rec in self.records.all():
                if rec.network == name and rec.key not in keep:
                    stale.setdefault(rec.key, (rec.container_id, rec.ifname, [rec.port_name]))
            released: list[tuple[str, str, Record | None]] = []
            for cid, ifname, names in stale.values():
                try:
                    released.append((cid, ifname, self._forget(cid, ifname, names)))
                except CniError as exc:
                    unsafe.append(exc.msg)
        for cid, ifname, record in released:
            self._release_ipam(replace(env, container_id=cid, ifname=ifname), record, raw)
        if unsafe:
            raise CniError(UNSAFE_PATH, "GC left paths that are no longer safe to touch", "; ".join(unsafe))
        return None


def _forgiving_env(env: dict[str, str]) -> CniEnv:
    """The environment of a DEL/GC: a malformed CNI_ARGS entry is dropped, CNI_NETNS may be empty."""
    args: dict[str, str] = {}
    for part in env.get("CNI_ARGS", "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key:
            args[key] = value
    return CniEnv(
        command=env.get("CNI_COMMAND", ""),
        container_id=env.get("CNI_CONTAINERID", ""),
        ifname=env.get("CNI_IFNAME", ""),
        netns=env.get("CNI_NETNS", ""),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        args=args,
    )


def _keep_list(raw: dict[str, Any]) -> set[str]:
    """The attachments GC must keep: ``cni.dev/valid-attachments``, a list of {containerID, ifname} (code 7 when
    it is missing or malformed: without a valid keep list GC would remove every attachment of the network)."""
    key = next((k for k in ("cni.dev/valid-attachments", "cni.dev/attachments") if k in raw), None)
    entries = raw.get(key) if key is not None else None
    if not isinstance(entries, list):
        raise CniError(
            INVALID_CONFIG,
            "GC needs cni.dev/valid-attachments, a list of the attachments to keep",
            f"got {'nothing' if key is None else type(entries).__name__}; nothing was removed",
        )
    keep: set[str] = set()
    for i, a in enumerate(entries):
        cid = a.get("containerID") if isinstance(a, dict) else None
        ifname = a.get("ifname") if isinstance(a, dict) else None
        if not (isinstance(cid, str) and cid and isinstance(ifname, str) and ifname):
            raise CniError(
                INVALID_CONFIG,
                f"{key}[{i}] needs containerID and ifname (strings)",
                f"got {json.dumps(a)[:200]}; nothing was removed",
            )
        keep.add(attachment_key(cid, ifname))
    return keep


def _ipam_conf(raw: dict[str, Any]) -> dict[str, Any]:
    """What an IPAM plugin needs on stdin for DEL, as ADD saw it (stored in the attachment's record)."""
    out: dict[str, Any] = {"cniVersion": raw.get("cniVersion"), "name": raw.get("name"), "ipam": raw.get("ipam")}
    return {k: v for k, v in out.items() if v is not None}


def _record_from_port(port: VhostUserPort) -> Record:
    """A record rebuilt from a port's external_ids (ports made before the agent kept records, or a lost record)."""
    ids = port.external_ids
    return Record(
        container_id=ids.get(ovsvhost.ID_CONTAINER, ""),
        ifname=ids.get(ovsvhost.ID_IFNAME, ""),
        network=ids.get(ovsvhost.ID_NETWORK, ""),
        port_name=port.name,
        folder=ids.get(ovsvhost.ID_FOLDER, ""),
        folder_made=ids.get(ovsvhost.ID_FOLDER_OWNED) == "true",
        socket_name=Path(ids.get(ovsvhost.ID_SOCKET, "")).name,
        config_file=ids.get(ovsvhost.ID_CONFIG_FILE, ""),
        devinfo_file=ids.get(ovsvhost.ID_DEVINFO),
    )


def _folder_prior(folder: Path) -> FolderPrior | None:
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    return FolderPrior(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def _restore_folder(folder: Path, prior: FolderPrior) -> None:
    try:
        fd = fsutil.open_dir_nofollow(folder)
    except FileNotFoundError:
        return
    try:
        os.fchown(fd, prior.uid, prior.gid)
        os.fchmod(fd, prior.mode)
    finally:
        os.close(fd)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise fsutil.UnsafePathError(f"{folder} is no longer a folder")
    try:
        os.rmdir(folder)
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        LOG.warning("leaving %s: it holds entries the agent did not make", folder)
