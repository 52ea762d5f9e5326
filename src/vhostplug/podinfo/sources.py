"""Where a pod learns about its vhost-user / vDPA interfaces, read in order, merged without duplicates.

1. KubeVirt's downward API file ``/etc/podinfo/network-info`` (``{"interfaces": [{network, deviceInfo, mac, mtu}]}``).
2. The downward API annotations file ``/etc/podnetinfo/annotations``: ``k8s.v1.cni.cncf.io/network-status`` entries'
   ``device-info`` (and ``kubevirt.io/network-info`` when present).
3. A Multus network-status JSON array given directly (a file, ``-`` for stdin, or the JSON text itself).
4. DRA device metadata (KEP-5304) of our driver, ``/var/run/kubernetes.io/dra-device-attributes/{resourceclaims,
   resourceclaimtemplates}/<claim>/<request>/vhostuser.vhostplug.io-metadata.json``: ``vhost-user-path`` and
   ``vhost-user-mode`` of a port claimed through DRA (:mod:`vhostplug.podinfo.devicemetadata`).
5. kuryr-style config files ``<container_id>-<ifname>`` = ``{"vhostname", "vhostmac", "mode"}`` in the socket folders
   (``/var/run/vhostuser``, shared between pods, so only files of our container IDs; and every
   ``/var/run/vhostplug/<device>/``, private to the pod, so any config file there).

Every reader returns what it found and notes each place it looked, so "nothing found" can say where it looked.
Standard library only.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.podinfo import containerid, devicemetadata, goquote

NETWORK_INFO = "etc/podinfo/network-info"
ANNOTATIONS = "etc/podnetinfo/annotations"
KURYR_DIR = "var/run/vhostuser"
VHOSTPLUG_DIR = "var/run/vhostplug"
NETWORK_STATUS_KEY = "k8s.v1.cni.cncf.io/network-status"
KUBEVIRT_NETWORK_INFO_KEY = "kubevirt.io/network-info"
_MAX_CONFIG = 64 * 1024


@dataclass(frozen=True)
class PodInterface:
    """One interface as the app must use it. ``mode`` is the app's role (``server``: the app creates the socket)."""

    name: str
    type: str  # "vhost-user" | "vdpa"
    path: str
    mode: str | None = None
    mac: str = ""
    driver: str | None = None  # vdpa only: "vhost" (a /dev/vhost-vdpa-N char device) or "virtio" (a kernel netdev)
    source: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "mode": self.mode, "path": self.path, "mac": self.mac}


@dataclass
class Findings:
    """What the readers found, where they looked, and what they could not read (warnings, not errors)."""

    interfaces: list[PodInterface] = field(default_factory=list)
    looked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, found: list[PodInterface]) -> None:
        seen = {(i.type, i.path) for i in self.interfaces}
        for iface in found:
            if (iface.type, iface.path) not in seen:
                seen.add((iface.type, iface.path))
                self.interfaces.append(iface)


def from_device_info(name: str, info: Any, mac: str, source: str) -> PodInterface | None:
    """A device-info (spec 1.1.0) object -> interface; None for other types (pci, memif) or no device-info."""
    if not isinstance(info, dict):
        return None
    kind = info.get("type")
    if kind == "vhost-user":
        body = info.get("vhost-user")
        if not isinstance(body, dict) or not body.get("path"):
            raise ValueError(f"{source}: interface {name!r}: vhost-user device-info without a path")
        mode = str(body.get("mode", "")).lower()
        if mode not in ("server", "client"):
            raise ValueError(f"{source}: interface {name!r}: vhost-user mode must be server or client, not {mode!r}")
        return PodInterface(name=name, type="vhost-user", path=str(body["path"]), mode=mode, mac=mac, source=source)
    if kind == "vdpa":
        body = info.get("vdpa")
        if not isinstance(body, dict) or not body.get("path"):
            raise ValueError(f"{source}: interface {name!r}: vdpa device-info without a path")
        driver = str(body.get("driver", "")) or None
        return PodInterface(name=name, type="vdpa", path=str(body["path"]), mac=mac, driver=driver, source=source)
    return None


def from_network_info(data: Any, source: str) -> list[PodInterface]:
    """KubeVirt network-info: ``{"interfaces": [{"network", "deviceInfo", "mac", "mtu"}]}``."""
    if data in (None, "", {}):
        return []
    if not isinstance(data, dict) or not isinstance(data.get("interfaces", []), list):
        raise ValueError(f"{source}: not a KubeVirt network-info object")
    found = []
    for entry in data.get("interfaces") or []:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("network", ""))
        iface = from_device_info(name, entry.get("deviceInfo"), str(entry.get("mac", "")), source)
        if iface:
            found.append(iface)
    return found


def from_network_status(data: Any, source: str) -> list[PodInterface]:
    """Multus network-status: a JSON array of ``{name, interface, mac, device-info, ...}``."""
    if not isinstance(data, list):
        raise ValueError(f"{source}: network-status is not a JSON array")
    found = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("interface") or entry.get("name") or "")
        iface = from_device_info(name, entry.get("device-info"), str(entry.get("mac", "")), source)
        if iface:
            found.append(iface)
    return found


def from_kuryr_config(path: Path, ifname: str, data: Any, root: Path = Path("/")) -> PodInterface:
    """A kuryr-style config ``{"vhostname", "vhostmac", "mode"}``; the socket lives next to the file.

    The socket path is given as the container sees it (``path`` read under ``root`` loses that prefix).
    """
    if not isinstance(data, dict) or not isinstance(data.get("vhostname"), str) or not data["vhostname"]:
        raise ValueError(f"{path}: not a vhost-user config file (no 'vhostname')")
    sock = str(data["vhostname"])
    if "/" in sock or sock in (".", ".."):
        raise ValueError(f"{path}: vhostname {sock!r} is not a plain file name")
    mode = str(data.get("mode", "")).lower()
    if mode not in ("server", "client"):
        raise ValueError(f"{path}: mode must be server or client, not {mode!r}")
    folder = path.parent
    if root != Path("/") and folder.is_relative_to(root):
        folder = Path("/") / folder.relative_to(root)
    mac = str(data.get("vhostmac", ""))
    return PodInterface(name=ifname, type="vhost-user", path=str(folder / sock), mode=mode, mac=mac, source=str(path))


def _load_json_file(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text) if text.strip() else None


def _config_files(folder: Path, prefixes: list[str] | None) -> list[tuple[Path, str]]:
    """Regular files in ``folder`` that can be config files; with ``prefixes`` only ``<prefix>-<ifname>`` ones."""
    out: list[tuple[Path, str]] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    for name in names:
        if name.startswith("."):
            continue
        try:
            st = os.lstat(folder / name)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_CONFIG:
            continue
        if prefixes is None:
            ifname = name.split("-", 1)[1] if "-" in name else name
            out.append((folder / name, ifname))
            continue
        for prefix in prefixes:
            if name.startswith(prefix + "-") and len(name) > len(prefix) + 1:
                out.append((folder / name, name[len(prefix) + 1 :]))
                break
    return out


def read_kuryr_dir(folder: Path, prefixes: list[str] | None, found: Findings, root: Path = Path("/")) -> None:
    found.looked.append(f"{folder}/<container-id>-<ifname>" if prefixes is not None else f"{folder}/*")
    for path, ifname in _config_files(folder, prefixes):
        try:
            data = _load_json_file(path)
        except (OSError, ValueError) as exc:
            if prefixes is not None:
                found.problems.append(f"{path}: unreadable config file: {exc}")
            continue
        if prefixes is None and not (isinstance(data, dict) and "vhostname" in data):
            continue  # our own device folders hold other files too
        try:
            found.add([from_kuryr_config(path, ifname, data, root)])
        except ValueError as exc:
            found.problems.append(str(exc))


@dataclass(frozen=True)
class Places:
    """Every place to look. Defaults are the standard in-pod paths under ``root``."""

    root: Path = Path("/")
    network_info: Path | None = None
    annotations: Path | None = None
    network_status: str | None = None  # a file, "-" for stdin, or inline JSON
    socket_dirs: tuple[Path, ...] | None = None
    container_ids: tuple[str, ...] | None = None

    def network_info_path(self) -> Path:
        return self.network_info or self.root / NETWORK_INFO

    def annotations_path(self) -> Path:
        return self.annotations or self.root / ANNOTATIONS

    def shared_socket_dirs(self) -> list[Path]:
        if self.socket_dirs is None:
            return [self.root / KURYR_DIR]
        return [self.root / str(d).lstrip("/") for d in self.socket_dirs]

    def own_socket_dirs(self) -> list[Path]:
        if self.socket_dirs is not None:
            return []
        base = self.root / VHOSTPLUG_DIR
        try:
            return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return []


def read_dra_metadata(root: Path, found: Findings, driver: str = devicemetadata.VHOSTPLUG_DRIVER) -> None:
    """Our driver's vhost-user devices in the pod's DRA device metadata, one interface per claim and request
    (named ``<claim>/<request>``); an empty file (metadata not written yet) is skipped."""
    base = root / devicemetadata.CONTAINER_ROOT.lstrip("/")
    found.looked.append(f"{base}/*/<claim>/<request>/{driver}-metadata.json")
    for path in sorted(base.glob(f"*/*/*/{driver}-metadata.json")):
        request, claim = path.parent.name, path.parent.parent.name
        try:
            meta = devicemetadata.decode(path.read_text(), str(path))
            if meta is None:
                continue
            vu = devicemetadata.vhost_user(meta, request, driver, str(path))
        except (OSError, devicemetadata.MetadataError) as exc:
            found.problems.append(str(exc))
            continue
        found.add([PodInterface(f"{claim}/{request}", "vhost-user", vu.path, vu.mode, source=str(path))])


def _read_source(found: Findings, label: str, load: Any, parse: Any) -> None:
    try:
        data = load()
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        found.problems.append(f"{label}: cannot read: {exc}")
        return
    try:
        found.add(parse(data, label))
    except ValueError as exc:
        found.problems.append(str(exc))


def _load_network_status(spec: str) -> Any:
    if spec == "-":
        return json.loads(sys.stdin.read())
    if spec.lstrip().startswith("["):
        return json.loads(spec)
    return _load_json_file(Path(spec))


def find(places: Places) -> Findings:
    """Read every source in order; interfaces are merged, the first source to name a socket path wins."""
    found = Findings()

    path = places.network_info_path()
    found.looked.append(str(path))
    _read_source(found, str(path), lambda: _load_json_file(path), from_network_info)

    ann_path = places.annotations_path()
    found.looked.append(f"{ann_path} ({NETWORK_STATUS_KEY}, {KUBEVIRT_NETWORK_INFO_KEY})")
    try:
        annotations = goquote.parse_annotations(ann_path.read_text(errors="surrogateescape"))
    except FileNotFoundError:
        annotations = {}
    except (OSError, ValueError) as exc:
        found.problems.append(f"{ann_path}: cannot parse: {exc}")
        annotations = {}
    for key, parse in ((NETWORK_STATUS_KEY, from_network_status), (KUBEVIRT_NETWORK_INFO_KEY, from_network_info)):
        if key in annotations:
            label = f"{ann_path} [{key}]"
            value = annotations[key]
            _read_source(found, label, lambda value=value: json.loads(value) if value.strip() else None, parse)

    if places.network_status is not None:
        spec = places.network_status
        label = "network-status (inline)" if spec.lstrip().startswith("[") else f"network-status {spec}"
        found.looked.append(label)
        _read_source(found, label, lambda: _load_network_status(spec), from_network_status)

    read_dra_metadata(places.root, found)

    if places.container_ids is not None:
        ids = list(places.container_ids)
    else:
        ids, id_files = containerid.candidate_ids(places.root)
        found.looked += [f"{f} (container ID)" for f in id_files]
    for folder in places.shared_socket_dirs():
        if ids:
            read_kuryr_dir(folder, ids, found, places.root)
        else:
            found.looked.append(f"{folder} (skipped: no container ID found)")
    if places.socket_dirs is None:
        found.looked.append(f"{places.root / VHOSTPLUG_DIR}/*/")
    for folder in places.own_socket_dirs():
        read_kuryr_dir(folder, None, found, places.root)
    return found
