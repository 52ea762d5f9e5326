"""The CNI verbs for a vhost-user attachment (``"device": "vhost-user"``, the default): ADD, CHECK and STATUS, the port
DEL and GC hand back, and the ports of ADDs that failed while the switch hung.

What to make comes from :mod:`vhostplug.cni.planning` (the socket folder's source: kuryr, a device, the agent's own),
the switch and its client-mode sockets are behind the :class:`~vhostplug.protocols.Dataplane` seam. ADD validates
everything before its first side effect and keeps an undo list, so any failure leaves nothing behind; it stores what it
made in the agent's record (:mod:`vhostplug.cni.records`) and on the port's external_ids.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from vhostplug import deadline, deviceinfo, fsutil
from vhostplug.cni import folders, ipam, planning
from vhostplug.cni.netconf import NetConf
from vhostplug.cni.planning import Plan
from vhostplug.cni.records import Record
from vhostplug.cni.spec import (
    DATAPLANE_FAILURE,
    INVALID_CONFIG,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    UNSAFE_PATH,
    CniEnv,
    CniError,
    convert_ips,
    interface_entry,
)
from vhostplug.cni.verbs import (
    VerbContext,
    ipam_env,
    new_record,
    prev_interface,
    prev_result,
    require_ready,
    require_status,
)
from vhostplug.model import Mode, VhostUserPort
from vhostplug.protocols import DataplaneError, DataplaneUnavailable, SocketPlacementError
from vhostplug.undo import Undo, roll_back

LOG = logging.getLogger(__name__)


class VhostUserVerbs:
    def __init__(self, ctx: VerbContext) -> None:
        self.ctx = ctx
        #: port name -> attachment key of ADDs that failed while their port's transaction may still land (OVSDB
        #: hung): the agent's tick removes such a port once OVSDB answers, unless a later ADD made it its own
        self._orphans: dict[str, str] = {}

    # -- planning ----------------------------------------------------------------------------------------------
    def plan(self, env: CniEnv, conf: NetConf, raw: dict[str, Any]) -> Plan:
        record = self.ctx.records.load(env.container_id, env.ifname)
        recorded = record.folder if record is not None else None
        return planning.plan(planning.PlanInput(env, conf, raw, self.ctx.options.policy, recorded))

    def _check_device_free(self, plan: Plan) -> None:
        """A device folder serves one attachment at a time: refuse one another container's record names."""
        att = plan.attachment
        if not plan.folder_is_device or not att.device_id:
            return
        for rec in self.ctx.records.all():
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
        with self.ctx.locked():
            again = self._repeated(plan, conf)
            if again is not None:  # a repeated ADD of a live attachment: the first ADD's answer, nothing redone
                deadline.current().finish()
                return self._result(version, env, conf, again.mac or att.mac, plan, again.ipam_result or {})
            self._check_device_free(plan)
            self._clear_leftover(att.port_name, att.key)
            try:
                ipam_result, record = self._add_steps(env, conf, raw, plan, undo)
                self.ctx.records.save(replace(record, ipam_result=ipam_result))
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
        record = self.ctx.records.load(att.container_id, att.ifname)
        if record is None:
            return None
        port = self.ctx.dataplane.get_port(record.port_name)
        if port is None or port.attachment_key != att.key:
            LOG.info("ADD of %s: its record names port %s, which is gone: starting afresh", att.key, record.port_name)
            self.ctx.forget(att.container_id, att.ifname, [record.port_name])
            return None
        first = (
            record.network,
            record.port_name,
            port.ovs_type,
            record.folder,
            record.socket_name,
            record.mac or att.mac,
        )
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
        dp = self.ctx.dataplane
        own = self.ctx.options.ownership
        require_ready(dp.ready())
        root = plan.folder.parent
        if not root.exists():
            root.mkdir(parents=True, mode=0o755)
        prior = folders.folder_prior(plan.folder)
        # the record first, naming the folder this ADD is about to make: an agent killed between making the folder
        # and saving the record would leave a folder that no record names (DEL and GC go by the records)
        record = new_record(
            env,
            conf,
            raw,
            att.port_name,
            folder=str(plan.folder),
            folder_made=prior is None,
            socket_name=att.socket_name,
            config_file=plan.config_file_name,
            folder_prior=prior,
            devinfo_file=plan.device_info_file,
            mac=att.mac,
        )
        self.ctx.records.save(record)
        undo.append(lambda: self.ctx.records.remove(att.container_id, att.ifname))
        try:
            made = fsutil.ensure_dir(plan.folder, own)
        except fsutil.UnsafePathError as exc:
            raise CniError(UNSAFE_PATH, f"refusing the socket folder: {exc}") from None
        if made:
            undo.append(lambda: fsutil.remove_dir(plan.folder))
        elif prior is not None:
            undo.append(lambda: folders.restore_folder(plan.folder, prior))
        if made != (prior is None):  # it came or went in between: the record says what this ADD really made
            record = replace(record, folder_made=made, folder_prior=None if made else prior)
            self.ctx.records.save(record)
        # a socket left by an earlier user of this folder would make the app's bind fail
        folders.unlink_socket(plan.folder, att.socket_name)
        ipam_result: dict[str, Any] = {}
        if conf.ipam:  # started now, its result collected below: the plugin starts up while the port is made
            i_env = ipam_env(env, att.container_id, att.ifname)
            running = ipam.Running("ADD", raw, i_env, env.path)

            def release() -> None:
                running.reap()
                ipam.delegate("DEL", raw, i_env, env.path)

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
            dp.attach(att, timeout=self.ctx.options.attach_timeout, meanwhile=meanwhile)
            undo.append(lambda: dp.detach(att.port_name))
            if att.mode is Mode.CLIENT:
                undo.append(lambda: folders.unlink_socket(plan.folder, att.socket_name))
                dp.place_client_socket(att, own, self.ctx.options.client_socket_wait)
            undo.append(lambda: self._orphans.__setitem__(att.port_name, att.key))
            self._orphans.pop(att.port_name, None)
        except DataplaneUnavailable:
            raise
        except SocketPlacementError as exc:
            raise CniError(IO_FAILURE, str(exc)) from None
        except DataplaneError as exc:
            raise CniError(DATAPLANE_FAILURE, str(exc)) from None
        return ipam_result, record

    # -- ports of ADDs that failed while OVSDB hung ------------------------------------------------------------
    def sweep_orphans(self) -> list[str]:
        if not self._orphans:
            return []
        with self.ctx.locked():
            return [name for name in list(self._orphans) if self._sweep_orphan(name)]

    def _clear_leftover(self, port_name: str, key: str) -> None:
        """Caller holds the lock, and no record of ``key`` exists: a port of ``key`` is then what an earlier ADD left
        that did not stand (failed, killed, or applied late by OVSDB). Removed, so the ADD makes everything anew
        (reusing it would skip the IPAM result and the files)."""
        self._orphans.pop(port_name, None)
        port = self.ctx.dataplane.get_port(port_name)
        if port is not None and port.attachment_key == key:
            LOG.info("ADD of %s: removing port %s, left by an earlier ADD that did not stand", key, port_name)
            self.ctx.dataplane.detach(port_name)

    def _sweep_orphan(self, port_name: str) -> bool:
        """Caller holds the lock. Remove the port ``port_name`` that a failed ADD may have left (an ADD that stands
        takes its port off the list); forget it once OVSDB said where it stands. True when a port was removed."""
        key = self._orphans.get(port_name)
        if key is None:
            return False
        try:
            port = self.ctx.dataplane.get_port(port_name)
            removed = False
            if port is not None and port.attachment_key == key:
                removed = self.ctx.dataplane.detach(port_name)
                LOG.info("removed port %s of a failed ADD of %s (OVSDB applied it late)", port_name, key)
        except DataplaneError as exc:  # OVSDB still not answering: next tick
            LOG.debug("port %s of a failed ADD: %s", port_name, exc)
            return False
        self._orphans.pop(port_name, None)
        return removed

    # -- DEL / GC ----------------------------------------------------------------------------------------------
    def release_port(self, port: VhostUserPort) -> None:
        self.ctx.dataplane.detach(port.name)

    # -- CHECK -------------------------------------------------------------------------------------------------
    def check(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None:
        prev = prev_result(conf)
        plan = self.plan(env, conf, raw)
        att = plan.attachment
        dp = self.ctx.dataplane
        require_ready(dp.health())
        port = dp.get_port(att.port_name)
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
        entry = prev_interface(prev, att.ifname)
        if entry.get("mac") and entry["mac"] != att.mac:
            raise CniError(DATAPLANE_FAILURE, f"interface MAC {att.mac} differs from prevResult's {entry['mac']}")
        if entry.get("socketPath") and entry["socketPath"] != str(att.socket_path):
            raise CniError(
                DATAPLANE_FAILURE, f"socket {att.socket_path} differs from prevResult's {entry['socketPath']}"
            )
        if conf.ipam:
            ipam.delegate("CHECK", raw, ipam_env(env, env.container_id, env.ifname), env.path)

    # -- STATUS ------------------------------------------------------------------------------------------------
    def status(self, env: CniEnv, conf: NetConf, raw: dict[str, Any], version: str) -> None:
        require_status(self.ctx)
