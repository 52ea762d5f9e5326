"""DEL and GC: remove what ADD made, found from the agent's record (:mod:`vhostplug.cni.records`) or the port's
external_ids, never from the network config (which may have changed or broken since ADD); a found port goes back
through the verbs of the device it was made for (:func:`vhostplug.cni.verbs.device_of`)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from vhostplug import fsutil, ovsvhost
from vhostplug.cni import folders, ipam
from vhostplug.cni.records import Record
from vhostplug.cni.spec import (
    INVALID_CONFIG,
    UNSAFE_PATH,
    CniEnv,
    CniError,
    check_container_id,
    check_ifname,
    require_verb,
)
from vhostplug.cni.verbs import DeviceVerbs, VerbContext, device_of, ipam_conf, ipam_env
from vhostplug.kuryr import cni as kuryr_cni
from vhostplug.model import VhostUserPort, attachment_key, port_name_for

LOG = logging.getLogger(__name__)


class Cleanup:
    def __init__(self, ctx: VerbContext, devices: Mapping[str, DeviceVerbs]) -> None:
        self.ctx = ctx
        self.devices = devices

    # -- DEL ---------------------------------------------------------------------------------------------------
    def delete(self, env: CniEnv, raw: dict[str, Any] | None) -> None:
        """Remove what ADD made for (CNI_CONTAINERID, CNI_IFNAME)."""
        check_container_id(env.container_id)
        check_ifname(env.ifname)
        with self.ctx.locked():
            record = self.forget(env.container_id, env.ifname, self._port_candidates(env, raw))
        self._release_ipam(env, record, raw)

    def undo_add(self, env: CniEnv, raw: dict[str, Any]) -> None:
        """What DEL does, for an ADD that finished after its caller was answered (caller holds the lock)."""
        self._release_ipam(env, self.forget(env.container_id, env.ifname, []), raw)

    def _port_candidates(self, env: CniEnv, raw: dict[str, Any] | None) -> list[str]:
        names = [port_name_for(env.container_id, env.ifname)]
        if raw is not None:  # a kuryr port is named by Neutron: its name is in the input, if the input still parses
            with contextlib.suppress(Exception):
                binding = kuryr_cni.from_cni(raw, env.args, env.ifname)
                if binding is not None:
                    names.append(binding.port_name)
        return names

    def forget(self, cid: str, ifname: str, port_names: list[str]) -> Record | None:
        """Release the attachment's port and remove what its record lists; return the record (None: none found).

        Caller holds the lock. Raises CniError(UNSAFE_PATH) naming a stored path that is no longer safe to touch
        (then that path and the record are left as they are, for a later DEL).
        """
        key = attachment_key(cid, ifname)
        records = self.ctx.records
        record = records.load(cid, ifname)
        names = [record.port_name] if record is not None else port_names
        port: VhostUserPort | None = None
        for name in names:
            found = self.ctx.dataplane.get_port(name)
            if found is not None and found.attachment_key == key:
                port = found
                break
        if record is None and port is not None:
            record = record_from_port(port)
        if port is not None:
            self.devices[device_of(port)].release_port(port)
        if record is not None:
            self._remove_made(record)
            records.remove(cid, ifname)
        return record

    def _remove_made(self, record: Record) -> None:
        folder = Path(record.folder)
        try:
            if record.socket_name:
                folders.unlink_socket(folder, record.socket_name)
            if record.config_file:
                fsutil.unlink_in(folder, record.config_file)
            if record.devinfo_file:
                p = Path(record.devinfo_file)
                fsutil.unlink_in(p.parent, p.name)
            if record.folder_made:
                folders.rmdir_if_empty(folder)
            elif record.folder_prior is not None:
                folders.restore_folder(folder, record.folder_prior)
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
            if raw["ipam"].get("type") not in self.ctx.options.policy.ipam_plugins:
                return
            conf = ipam_conf(raw)
        if not conf:
            return
        cni_path = env.path or (record.cni_path if record is not None else ())
        cid = record.container_id if record is not None else env.container_id
        ifname = record.ifname if record is not None else env.ifname
        try:
            ipam.delegate("DEL", conf, ipam_env(env, cid, ifname), cni_path)
        except CniError as exc:
            LOG.warning(
                "IPAM release of %s failed (left to the IPAM plugin's own GC): %s", attachment_key(cid, ifname), exc
            )

    # -- GC ----------------------------------------------------------------------------------------------------
    def gc(self, env: CniEnv, raw: dict[str, Any] | None) -> None:
        """Remove every attachment of this network that is not in the keep list, from ports and records alike."""
        name = raw.get("name") if raw is not None else None
        asked = raw.get("cniVersion") if raw is not None else None
        require_verb("GC", asked if isinstance(asked, str) else "")
        if not isinstance(name, str) or not name:
            raise CniError(INVALID_CONFIG, "GC needs the network's name in the configuration")
        keep = keep_list(raw or {})
        unsafe: list[str] = []
        with self.ctx.locked():
            stale: dict[str, tuple[str, str, list[str]]] = {}
            for port in self.ctx.dataplane.list_ports():
                ids = port.external_ids
                if ids.get(ovsvhost.ID_NETWORK) == name and port.attachment_key not in keep:
                    cid, ifname = ids.get(ovsvhost.ID_CONTAINER, ""), ids.get(ovsvhost.ID_IFNAME, "")
                    stale[attachment_key(cid, ifname)] = (cid, ifname, [port.name])
            for rec in self.ctx.records.all():
                if rec.network == name and rec.key not in keep:
                    stale.setdefault(rec.key, (rec.container_id, rec.ifname, [rec.port_name]))
            released: list[tuple[str, str, Record | None]] = []
            for cid, ifname, names in stale.values():
                try:
                    released.append((cid, ifname, self.forget(cid, ifname, names)))
                except CniError as exc:
                    unsafe.append(exc.msg)
        for cid, ifname, record in released:
            self._release_ipam(replace(env, container_id=cid, ifname=ifname), record, raw)
        if unsafe:
            raise CniError(UNSAFE_PATH, "GC left paths that are no longer safe to touch", "; ".join(unsafe))


def forgiving_env(env: dict[str, str]) -> CniEnv:
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


def keep_list(raw: dict[str, Any]) -> set[str]:
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


def record_from_port(port: VhostUserPort) -> Record:
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
