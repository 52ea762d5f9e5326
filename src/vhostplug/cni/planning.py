"""Attachment planning: from a validated ADD/CHECK (environment + netconf) to the :class:`Plan` the verbs carry out.

One planner per source of the socket folder (an allocation source), registered in :data:`PLANNERS` and tried in its
order, first answer wins:

- ``kuryr`` (:func:`plan_kuryr`): a kuryr / Neutron / os-vif binding in the input (``KuryrBinding.to_attachment``), its
  mount point;
- ``device`` (:func:`plan_device_folder`): a device of our device plugin (``runtimeConfig.deviceID`` / ``deviceID``),
  its folder;
- ``own`` (:func:`plan_own_folder`): none of the above; a folder of the agent's own under the socket root.

A new allocation source (DRA) is a planner function that answers ``None`` when the input is not its own and otherwise
builds its plan with :func:`folder_plan` (the attachment, socket paths and files, as every folder source has them),
plus one entry in :data:`PLANNERS` before ``own``; :func:`plan` adds what every attachment carries and checks it.

Planning has no side effect: ADD calls it before anything is made, CHECK to know what to look at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vhostplug import deviceinfo, ovsvhost
from vhostplug.cni.netconf import NetConf
from vhostplug.cni.policy import NodePolicy
from vhostplug.cni.spec import INVALID_CONFIG, CniEnv, CniError
from vhostplug.kuryr import cni as kuryr_cni
from vhostplug.kuryr.binding import KuryrInputError
from vhostplug.kuryr.binding import config_file_name as kuryr_config_file_name
from vhostplug.model import MAX_SOCKET_PATH, Attachment, attachment_key, mac_for, port_name_for


@dataclass(frozen=True)
class Plan:
    """Everything ADD/DEL/CHECK need to know about one attachment, computed before any side effect."""

    attachment: Attachment
    folder: Path
    #: the folder is not the agent's own (a device folder or a kuryr mount point): never removed by us
    folder_is_device: bool
    container_socket_path: str
    config_file_name: str
    device_info_file: str | None


@dataclass(frozen=True)
class PlanInput:
    env: CniEnv
    conf: NetConf
    raw: dict[str, Any]
    policy: NodePolicy
    #: the folder this attachment's record names (a re-ADD or a CHECK after the device plugin's marks went with an
    #: agent restart: the device was checked when it was first attached)
    recorded_folder: str | None = None

    @property
    def socket_root(self) -> Path:
        return self.policy.socket_root(self.conf.socket_root)

    @property
    def container_socket_root(self) -> str:
        return self.policy.container_socket_root(self.conf.container_socket_root)


Planner = Callable[[PlanInput], Plan | None]


def own_folder_name(container_id: str, ifname: str) -> str:
    """The agent's own folder of an attachment: the container ID's first 12 characters (for people) and 16 hex of a
    SHA-256 of the whole attachment key (so containers sharing a prefix never share a folder), within socket limits."""
    digest = hashlib.sha256(attachment_key(container_id, ifname).encode()).hexdigest()[:16]
    return f"{container_id[:12]}-{digest}"


def plan_kuryr(p: PlanInput) -> Plan | None:
    try:
        binding = kuryr_cni.from_cni(p.raw, p.env.args, p.env.ifname)
    except KuryrInputError as exc:
        raise CniError(INVALID_CONFIG, f"invalid kuryr / os-vif input: {exc}") from None
    if binding is None:
        return None
    p.policy.kuryr_mount_point(binding.mount_point)
    p.policy.bridge(binding.bridge, "kuryr bridge")
    cid, ifname = p.env.container_id, p.env.ifname
    att = binding.to_attachment(cid, ifname, device_id=p.conf.effective_device_id)
    att = replace(att, mac=att.mac or mac_for(cid, ifname), mtu=att.mtu or p.conf.mtu, vlan=p.conf.vlan)
    folder = Path(binding.mount_point)
    return Plan(att, folder, True, binding.socket_path, kuryr_config_file_name(cid, ifname), _devinfo_file(p))


def _devinfo_file(p: PlanInput) -> str | None:
    asked = p.conf.device_info_file
    return None if asked is None else p.policy.devinfo_file(asked)


def plan_device_folder(p: PlanInput) -> Plan | None:
    device_id = p.conf.effective_device_id
    if not device_id:
        return None
    container_dir = deviceinfo.container_device_dir(device_id, p.container_socket_root)
    recorded = p.recorded_folder == str(p.socket_root / device_id)
    return folder_plan(p, p.policy.device(device_id, p.socket_root, recorded), container_dir, True)


def plan_own_folder(p: PlanInput) -> Plan | None:
    name = own_folder_name(p.env.container_id, p.env.ifname)
    return folder_plan(p, p.socket_root / name, f"{p.container_socket_root.rstrip('/')}/{name}", False)


def folder_plan(p: PlanInput, folder: Path, container_dir: str, is_device: bool) -> Plan:
    """The plan of an attachment whose socket is ``folder/vhu.sock`` on the host and ``container_dir/vhu.sock`` in the
    container (``is_device``: the folder is not the agent's own, so never removed by it)."""
    cid, ifname, conf = p.env.container_id, p.env.ifname, p.conf
    att = Attachment(
        container_id=cid,
        ifname=ifname,
        port_name=port_name_for(cid, ifname),
        socket_dir=folder,
        socket_name=deviceinfo.DEVICE_SOCKET_NAME,
        mode=conf.mode,
        bridge=p.policy.bridge(conf.bridge),
        mac=conf.runtime_config.mac or mac_for(cid, ifname),
        mtu=conf.mtu,
        vlan=conf.vlan,
        device_id=conf.effective_device_id,
    )
    container_socket = f"{container_dir}/{deviceinfo.DEVICE_SOCKET_NAME}"
    return Plan(att, folder, is_device, container_socket, f"{cid}-{ifname}", _devinfo_file(p))


#: allocation source -> its planner, in the order they are asked (``own`` answers every input: keep it last)
PLANNERS: dict[str, Planner] = {"kuryr": plan_kuryr, "device": plan_device_folder, "own": plan_own_folder}


def plan(p: PlanInput) -> Plan:
    """The first planner's answer, with the external_ids every attachment carries and its socket paths checked."""
    if p.conf.ipam is not None:
        p.policy.ipam_plugin(p.conf.ipam.get("type"))
    for planner in PLANNERS.values():
        found = planner(p)
        if found is not None:
            break
    else:  # pragma: no cover - plan_own_folder always answers
        raise AssertionError("no planner answered")
    check_socket_path(str(found.attachment.socket_path), "host")
    check_socket_path(found.container_socket_path, "container")
    extra = {
        **dict(found.attachment.extra_ids),
        ovsvhost.ID_NETWORK: p.conf.name,
        ovsvhost.ID_FOLDER: str(found.folder),
        ovsvhost.ID_CONFIG_FILE: found.config_file_name,
    }
    if found.device_info_file:
        extra[ovsvhost.ID_DEVINFO] = found.device_info_file
    for arg, key in (("K8S_POD_NAMESPACE", ovsvhost.ID_POD_NAMESPACE), ("K8S_POD_NAME", ovsvhost.ID_POD_NAME)):
        value = p.env.args.get(arg, "")
        if value and len(value) <= 253 and value.isprintable():  # a label for the metrics, nothing more
            extra[key] = value
    if not found.folder_is_device:
        extra[ovsvhost.ID_FOLDER_OWNED] = "true"
    att = replace(
        found.attachment,
        extra_ids=tuple(sorted(extra.items())),
        may_create_bridge=p.policy.may_create_bridges,
        datapath_type=p.policy.datapath_type,
    )
    return replace(found, attachment=att)


def check_socket_path(path: str, side: str) -> None:
    n = len(path.encode())
    if n > MAX_SOCKET_PATH:
        raise CniError(
            INVALID_CONFIG,
            f"{side} socket path {path} is {n} bytes; the limit for a unix socket path is {MAX_SOCKET_PATH}",
            "use a shorter socket root / container socket root or device ID",
        )
