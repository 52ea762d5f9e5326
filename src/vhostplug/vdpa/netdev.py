"""Kernel netdev plumbing for vDPA attachments (pyroute2, netlink only; no `ip` commands): read a link, move it into a
pod's network namespace under the pod's name with MAC/MTU/up in one go, apply an IPAM result, and move it back.

A move sets the new namespace and the new name in one RTM_NEWLINK, so the netdev never sits in the pod under a
temporary name and a name clash fails before anything moved. Moving out of the namespace flushes its addresses and
routes (the kernel does that on a namespace change), so DEL needs no address bookkeeping.

pyroute2 is imported at the first netlink step (it costs ~0.1 s of CPU): an agent without vDPA never loads it.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)
IFF_UP = 0x1
CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
_LIBC = ctypes.CDLL(None, use_errno=True)


class NetdevError(Exception):
    """A netlink step failed; the message names the netdev, the namespace and the kernel's reason."""


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    mac: str
    mtu: int
    up: bool


def _link(msg: Any) -> Link:
    return Link(
        name=str(msg.get_attr("IFLA_IFNAME")),
        index=int(msg["index"]),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        up=bool(msg["flags"] & IFF_UP),
    )


def _netlink_error() -> Any:
    """pyroute2's NetlinkError (an ``except`` clause evaluates it only when something was raised)."""
    from pyroute2 import NetlinkError

    return NetlinkError


@contextmanager
def _nl(netns: str | None) -> Iterator[Any]:
    """An rtnetlink socket in the host namespace (None) or in the namespace at path ``netns``."""
    from pyroute2 import IPRoute

    ipr: Any = IPRoute() if netns is None else IPRoute(fileno=_socket_in(netns))
    try:
        yield ipr
    finally:
        ipr.close()


def _socket_in(netns: str) -> int:
    """A NETLINK_ROUTE socket opened inside ``netns`` (its fd). A short-lived thread enters the namespace (setns
    moves only the calling thread) and makes the socket, which stays bound to that namespace. No fork: a forked
    child of the agent would share its asyncio signal wakeup fd, and a SIGTERM to the child would stop the agent."""
    out: dict[str, Any] = {}

    def enter() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            out["error"] = f"network namespace {netns} cannot be opened: {exc.strerror}"
            return
        try:
            if _LIBC.setns(fd, CLONE_NEWNET) != 0:
                out["error"] = f"cannot enter network namespace {netns}: {os.strerror(ctypes.get_errno())}"
                return
            out["fd"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE).detach()
        finally:
            os.close(fd)

    worker = threading.Thread(target=enter, name="vdpa-netns")
    worker.start()
    worker.join()
    if "fd" not in out:
        raise NetdevError(out.get("error", f"cannot open a netlink socket in {netns}"))
    return int(out["fd"])


def _reason(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)


def get(name: str, netns: str | None = None) -> Link | None:
    """The link called ``name`` in the host (or the given) namespace, None when there is none."""
    with _nl(netns) as ipr:
        idx = ipr.link_lookup(ifname=name)
        return _link(ipr.get_links(idx[0])[0]) if idx else None


def find(netns: str | None = None, index: int | None = None, mac: str | None = None) -> Link | None:
    """A link by ifindex and/or MAC (both must match when both are given)."""
    with _nl(netns) as ipr:
        for msg in ipr.get_links():
            link = _link(msg)
            if (index is None or link.index == index) and (mac is None or link.mac.lower() == mac.lower()):
                return link
    return None


def set_link(name: str, netns: str | None = None, **changes: Any) -> None:
    """``address``, ``mtu``, ``ifname`` and/or ``state`` ("up"/"down") on one link."""
    with _nl(netns) as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise NetdevError(f"netdev {name} not found in {netns or 'the host namespace'}")
        try:
            ipr.link("set", index=idx[0], **changes)
        except _netlink_error() as exc:
            raise NetdevError(f"cannot set {changes} on {name}: {_reason(exc)}") from None


def move_into(name: str, netns: str, ifname: str, mac: str | None, mtu: int | None) -> Link:
    """Move host netdev ``name`` into ``netns`` as ``ifname``, then set MAC, MTU and bring it up there.

    The kernel moves a netdev under its current name and renames it afterwards (the name given with the move is only
    used when the current one clashes), so a clash with ``ifname`` is checked first, and a failed rename moves the
    netdev straight back: either it is ``ifname`` in the pod, or it is still ``name`` in the host."""
    with _nl(netns) as pod:
        if pod.link_lookup(ifname=ifname):
            raise NetdevError(f"cannot move {name} into {netns}: {ifname} already exists in the pod")
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _nl(None) as ipr:
            idx = ipr.link_lookup(ifname=name)
            if not idx:
                raise NetdevError(f"netdev {name} is not in the host namespace (is it in use by another pod?)")
            try:
                ipr.link("set", index=idx[0], state="down")
                ipr.link("set", index=idx[0], net_ns_fd=fd, ifname=ifname)
            except _netlink_error() as exc:
                _bring_back(netns, name)
                hint = f" ({ifname} already exists in the pod)" if exc.code == errno.EEXIST else ""
                raise NetdevError(f"cannot move {name} into {netns} as {ifname}: {_reason(exc)}{hint}") from None
    finally:
        os.close(fd)
    changes: dict[str, Any] = {}
    if mac:
        changes["address"] = mac
    if mtu:
        changes["mtu"] = mtu
    with _nl(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise NetdevError(f"{ifname} vanished from {netns} right after the move")
        try:
            if changes:
                ipr.link("set", index=idx[0], **changes)
            ipr.link("set", index=idx[0], state="up")
        except _netlink_error() as exc:
            raise NetdevError(f"cannot set {changes} and up on {ifname} in {netns}: {_reason(exc)}") from None
        return _link(ipr.get_links(idx[0])[0])


def _bring_back(netns: str, name: str) -> None:
    """After a failed move+rename: if the netdev landed in the pod under its own name, move it back to the host."""
    try:
        with _nl(netns) as pod:
            idx = pod.link_lookup(ifname=name)
            if idx:
                pod.link("set", index=idx[0], net_ns_pid=os.getpid())
    except (NetdevError, _netlink_error()) as exc:
        LOG.error("%s is stuck in %s after a failed rename: %s", name, netns, exc)


def move_out(netns: str, ifname: str, name: str, mac: str | None, mtu: int | None, up: bool) -> Link:
    """Move ``ifname`` from ``netns`` back to the host as ``name`` (or ``vdpa%d`` if that name is taken), then put
    back MAC, MTU and its up/down state."""
    with _nl(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise NetdevError(f"{ifname} is not in {netns}")
        ipr.link("set", index=idx[0], state="down")
        try:
            ipr.link("set", index=idx[0], net_ns_pid=os.getpid(), ifname=name)
            host_name = name
        except _netlink_error() as exc:
            if exc.code != errno.EEXIST:
                raise NetdevError(f"cannot move {ifname} out of {netns}: {_reason(exc)}") from None
            LOG.warning("host already has a netdev %s: %s comes back under a kernel-chosen vdpa%%d name", name, ifname)
            ipr.link("set", index=idx[0], net_ns_pid=os.getpid(), ifname="vdpa%d")
            host_name = ""
        index = idx[0]
    restore_host(index, host_name, mac, mtu, up)
    back = find(None, index=index)
    if back is None:
        raise NetdevError(f"{ifname} did not arrive in the host namespace")
    return back


def restore_host(index: int, name: str, mac: str | None, mtu: int | None, up: bool) -> None:
    """Put a host netdev (found by ifindex) back to its original name, MAC, MTU and state."""
    with _nl(None) as ipr:
        links = ipr.get_links(index)
        current = _link(links[0])
        changes: dict[str, Any] = {}
        if name and current.name != name:
            ipr.link("set", index=index, state="down")
            changes["ifname"] = name
        if mac and current.mac.lower() != mac.lower():
            changes["address"] = mac
        if mtu and current.mtu != mtu:
            changes["mtu"] = mtu
        try:
            if changes:
                ipr.link("set", index=index, **changes)
            ipr.link("set", index=index, state="up" if up else "down")
        except _netlink_error() as exc:
            raise NetdevError(f"cannot restore {current.name} ({changes}): {_reason(exc)}") from None


def apply_ipam(netns: str, ifname: str, ips: list[dict[str, Any]], routes: list[dict[str, Any]]) -> None:
    """Addresses and routes of a CNI result on ``ifname`` (a route without ``gw`` goes via its family's gateway)."""
    gateways: dict[int, str] = {}
    with _nl(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise NetdevError(f"{ifname} not found in {netns}")
        try:
            for ip in ips:
                iface = ipaddress.ip_interface(str(ip["address"]))
                ipr.addr("add", index=idx[0], address=str(iface.ip), prefixlen=iface.network.prefixlen)
                if ip.get("gateway"):
                    gateways.setdefault(iface.version, str(ip["gateway"]))
            for route in routes:
                dst = ipaddress.ip_network(str(route["dst"]), strict=False)
                gw = route.get("gw") or gateways.get(dst.version)
                spec: dict[str, Any] = {"dst": str(dst), "oif": idx[0]}
                if gw:
                    spec["gateway"] = str(gw)
                ipr.route("add", **spec)
        except _netlink_error() as exc:
            raise NetdevError(f"cannot apply the IPAM result on {ifname} in {netns}: {_reason(exc)}") from None
        except (KeyError, ValueError) as exc:
            raise NetdevError(f"the IPAM result has a bad address or route: {exc}") from None


def addresses(netns: str, ifname: str) -> list[str]:
    """``addr/prefix`` of every address on ``ifname`` in ``netns`` (for CHECK)."""
    with _nl(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return []
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0])]
