"""DPDK EAL arguments for the pod's interfaces, and readiness (socket or folder present). Standard library only.

vhost-user: ``--vdev net_virtio_user<N>,path=<socket>`` plus ``,server=1`` when the app is the server (device-info mode
``server``: the app creates the socket and OVS connects), and ``,packed_vq=1``: virtio 1.1 packed virtqueues, about
1.5x the packet rate of split rings through OVS-DPDK on the lab machine (docs/benchmarks.md); it only allows them,
so a switch that does not offer packed rings negotiates split rings as before (``split_rings=True`` leaves it out). vDPA with the ``vhost`` driver: ``--vdev
virtio_user<N>,path=/dev/vhost-vdpa-X``. One counter numbers every vdev so their names never clash. A vDPA device
bound to the ``virtio`` driver is a kernel netdev, not something DPDK opens by path: it is skipped with a note.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from vhostplug.podinfo.sources import PodInterface

PACKED = ",packed_vq=1"


def dpdk_vdevs(interfaces: Iterable[PodInterface], split_rings: bool = False) -> tuple[list[str], list[str]]:
    """The ``--vdev`` values (without ``--vdev``) and notes about skipped interfaces."""
    vdevs: list[str] = []
    notes: list[str] = []
    for iface in interfaces:
        if "," in iface.path:
            notes.append(f"{iface.name}: path {iface.path!r} holds a ',' which DPDK devargs cannot carry; skipped")
            continue
        n = len(vdevs)
        if iface.type == "vhost-user":
            vdev = f"net_virtio_user{n},path={iface.path}"
            if iface.mode == "server":
                vdev += ",server=1"
            vdevs.append(vdev if split_rings else vdev + PACKED)
        elif iface.type == "vdpa":
            if iface.driver not in (None, "vhost"):
                notes.append(
                    f"{iface.name}: vdpa device bound to the {iface.driver} driver is a kernel netdev; skipped"
                )
                continue
            vdevs.append(f"virtio_user{n},path={iface.path}")
    return vdevs, notes


def dpdk_args(interfaces: Iterable[PodInterface], split_rings: bool = False) -> list[str]:
    """Flat EAL arguments: ``["--vdev", "net_virtio_user0,path=...,packed_vq=1", ...]``."""
    out: list[str] = []
    for vdev in dpdk_vdevs(interfaces, split_rings)[0]:
        out += ["--vdev", vdev]
    return out


def under_root(path: str, root: str = "/") -> str:
    """``path`` as seen from ``root`` (for ``--root``: paths in device-info are the container's)."""
    return os.path.join(root, path.lstrip("/")) if path.startswith("/") else os.path.join(root, path)


def not_ready(iface: PodInterface, root: str = "/") -> str | None:
    """Why ``iface`` cannot be used yet, or None when it can.

    vhost-user as client (OVS created the socket): the socket must exist. As server (the app will create it): only
    its folder must exist. vDPA: the character device must exist.
    """
    if iface.type == "vhost-user" and iface.mode == "server":
        folder = os.path.dirname(iface.path) or "."
        if os.path.isdir(under_root(folder, root)):
            return None
        return f"{iface.name}: folder {folder} does not exist (server mode: the app creates the socket there)"
    try:
        st = os.stat(under_root(iface.path, root))
    except OSError:
        return f"{iface.name}: {iface.path} does not exist"
    if iface.type == "vhost-user" and not stat.S_ISSOCK(st.st_mode):
        return f"{iface.name}: {iface.path} is not a unix socket"
    if iface.type == "vdpa" and not stat.S_ISCHR(st.st_mode):
        return f"{iface.name}: {iface.path} is not a character device"
    return None
