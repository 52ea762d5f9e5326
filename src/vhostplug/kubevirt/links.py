"""The stable link folder: one symlink per VMI interface pointing at that pod's real vhost-user device folder.

The domain XML names ``<links-dir>/<iface>/<socket name>``. ``<links-dir>/<iface>`` is a symlink to the device folder
(e.g. ``/var/run/vhostplug/dev-07``), so QEMU binds its server socket *inside* the device folder, where OVS looks for it
(binding through a symlinked folder works; a symlink as the socket's own name would not). On a migration source and
target the XML path is the same while each pod's link points at its own device folder.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from vhostplug import fsutil, validation
from vhostplug.model import MAX_SOCKET_PATH

#: short on purpose: the socket path built on it must stay within 107 bytes
DEFAULT_LINKS_DIR = validation.DEFAULT_LINKS_DIR


class LinkError(Exception):
    """A stable link cannot be made (bad name, too long a path, something else in the way)."""


def stable_socket_path(links_dir: Path, iface_name: str, socket_name: str) -> str:
    """The path the domain XML names for one interface; at most 107 bytes or :class:`LinkError`."""
    try:
        fsutil.check_component(iface_name, "interface name")
        fsutil.check_component(socket_name, "socket name")
    except fsutil.UnsafePathError as exc:
        raise LinkError(str(exc)) from exc
    path = f"{str(links_dir).rstrip('/')}/{iface_name}/{socket_name}"
    n = len(path.encode())
    if n > MAX_SOCKET_PATH:
        raise LinkError(
            f"stable socket path {path!r} is {n} bytes long; a unix socket path may have at most {MAX_SOCKET_PATH} "
            "bytes: shorten the links folder or the VMI interface name"
        )
    return path


def ensure_link(links_dir: Path, iface_name: str, target_dir: str) -> Path:
    """Make (or re-point, atomically) ``<links_dir>/<iface_name>`` -> ``target_dir``; returns the link path.

    Whatever else sits at that name (a real folder or file) is an error and is left alone.
    """
    try:
        fsutil.check_component(iface_name, "interface name")
    except fsutil.UnsafePathError as exc:
        raise LinkError(str(exc)) from exc
    links_dir = Path(links_dir)
    links_dir.mkdir(parents=True, exist_ok=True)
    link = links_dir / iface_name
    try:
        st = os.lstat(link)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISLNK(st.st_mode):
        raise LinkError(f"{link} exists and is not a symlink; refusing to replace it")
    if st is not None and os.readlink(link) == target_dir:
        return link
    tmp = links_dir / f".{iface_name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target_dir, tmp)
    os.rename(tmp, link)
    return link


def remove_link(links_dir: Path, iface_name: str) -> bool:
    """Remove ``<links_dir>/<iface_name>`` when it is a symlink; True when one went."""
    link = Path(links_dir) / iface_name
    try:
        st = os.lstat(link)
    except FileNotFoundError:
        return False
    if not stat.S_ISLNK(st.st_mode):
        return False
    os.unlink(link)
    return True
