"""Move VMs from vhost-user client mode (OVS ``dpdkvhostuser``) to server mode (``dpdkvhostuserclient``), TripleO style.

Per domain: the socket folder (``/var/lib/vhost_sockets``, group shared by QEMU and OVS, setgid ``2775`` so QEMU's
sockets get the group), each client-mode interface whose socket is a ``dpdkvhostuser`` port's flipped to
``mode='server'`` at ``<socket-dir>/<port name>`` in the persistent definition, the OVS Interface retyped to
``dpdkvhostuserclient`` with ``options:vhost-server-path`` (one OVSDB transaction), and a cold restart when the
domain ran (QEMU's role on the socket flips, so nothing less works). Running domains are refused unless forced.
Order of execution: destroy (forced only), redefine, retype (on failure the old definition is restored), start.
:func:`plan` is pure; :func:`execute` does the work through libvirt and OVSDB.
"""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.audit.access import Principal
from vhostplug.audit.domains import flip_to_server, interfaces_of
from vhostplug.audit.ovs import OvsVhostPort, retype_to_client
from vhostplug.model import MAX_SOCKET_PATH

DEFAULT_SOCKET_DIR = Path("/var/lib/vhost_sockets")
DEFAULT_GROUP = "hugetlbfs"
DIR_MODE = 0o2775


@dataclass(frozen=True)
class DomainState:
    """What :func:`plan` needs to know about one domain."""

    name: str
    running: bool
    persistent: bool
    inactive_xml: str


@dataclass
class Step:
    action: str  # prepare-dir | destroy | redefine | retype-port | start
    detail: str
    status: str = "planned"  # planned | done | failed | skipped | rolled-back
    error: str = ""

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "detail": self.detail, "status": self.status, "error": self.error}


@dataclass(frozen=True)
class InterfaceChange:
    alias: str
    mac: str
    port: str
    old_path: str
    new_path: str


@dataclass
class DomainPlan:
    domain: str
    running: bool
    changes: list[InterfaceChange] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.refused) or any(s.status == "failed" for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "running": self.running,
            "refused": self.refused,
            "changes": [c.__dict__ for c in self.changes],
            "steps": [s.to_json() for s in self.steps],
            "notes": self.notes,
        }


@dataclass
class MigrationPlan:
    socket_dir: str
    group: str
    prepare: Step
    domains: list[DomainPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.prepare.status == "failed" or any(d.failed for d in self.domains)

    def to_json(self) -> dict[str, Any]:
        return {
            "socket_dir": self.socket_dir,
            "group": self.group,
            "prepare": self.prepare.to_json(),
            "domains": [d.to_json() for d in self.domains],
            "notes": self.notes,
            "failed": self.failed,
        }


def plan(
    domains: list[DomainState],
    ports: list[OvsVhostPort],
    socket_dir: Path = DEFAULT_SOCKET_DIR,
    group: str = DEFAULT_GROUP,
    force_running: bool = False,
    only: list[str] | None = None,
    qemu: Principal | None = None,
    ovs: Principal | None = None,
) -> MigrationPlan:
    """The per-domain plan to move client-mode vhost-user interfaces to server mode. Pure."""
    result = MigrationPlan(
        socket_dir=str(socket_dir),
        group=group,
        prepare=Step("prepare-dir", f"{socket_dir}: owner root, group {group}, mode {DIR_MODE:o} (setgid)"),
    )
    try:
        gid: int | None = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = None
        result.prepare.status = "failed"
        result.prepare.error = f"group {group!r} does not exist: create it and add QEMU's and OVS's users to it"
    for who, p in (("QEMU", qemu), ("OVS", ovs)):
        if p is not None and gid is not None and not p.is_root and gid not in p.gids:
            result.notes.append(
                f"{who} runs as {p.name} without group {group}: set it (qemu.conf `group`, OVS_USER_ID) first"
            )
    by_path = {p.socket_path: p for p in ports if p.deprecated}
    known = {d.name for d in domains}
    for name in only or []:
        if name not in known:
            result.domains.append(DomainPlan(domain=name, running=False, refused=f"no domain named {name!r}"))
    for dom in sorted(domains, key=lambda d: d.name):
        if only and dom.name not in only:
            continue
        dp = DomainPlan(domain=dom.name, running=dom.running)
        for iface in interfaces_of(dom.inactive_xml, dom.name):
            label = iface.alias or iface.mac or iface.path
            if iface.mode == "server":
                dp.notes.append(f"{label}: already mode='server' at {iface.path}")
                continue
            port = by_path.get(iface.path)
            if port is None:
                dp.notes.append(f"{label}: no dpdkvhostuser port serves {iface.path}; left as it is")
                continue
            new_path = str(socket_dir / port.name)
            if len(new_path.encode()) > MAX_SOCKET_PATH:
                dp.refused = f"{new_path} is longer than {MAX_SOCKET_PATH} bytes: choose a shorter --socket-dir"
            dp.changes.append(InterfaceChange(iface.alias, iface.mac, port.name, iface.path, new_path))
        if not dp.changes:
            if only or dp.notes:
                dp.notes.append("nothing to migrate")
                result.domains.append(dp)
            continue
        if not dom.persistent and not dp.refused:
            dp.refused = "transient domain: it has no definition to change"
        if dom.running and not force_running and not dp.refused:
            dp.refused = (
                "domain is running: QEMU's role on the socket flips, so it must restart cold; "
                "shut it down first or pass --force-running (destroy, redefine, start)"
            )
        if dom.running:
            dp.steps.append(Step("destroy", f"stop {dom.name} (cold restart: QEMU becomes the socket server)"))
        for c in dp.changes:
            dp.steps.append(
                Step("redefine", f"interface {c.alias or c.mac}: mode client -> server, {c.old_path} -> {c.new_path}")
            )
        for c in dp.changes:
            dp.steps.append(
                Step("retype-port", f"{c.port}: dpdkvhostuser -> dpdkvhostuserclient, vhost-server-path={c.new_path}")
            )
        if dom.running:
            dp.steps.append(Step("start", f"start {dom.name}; QEMU creates the sockets and OVS connects"))
        if dp.refused:
            for s in dp.steps:
                s.status = "skipped"
        result.domains.append(dp)
    return result


def prepare_dir(path: Path, group: str) -> None:
    gid = grp.getgrnam(group).gr_gid
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise OSError(f"{path} is not a real folder")
    os.chown(path, 0, gid)
    os.chmod(path, DIR_MODE)


def execute(mp: MigrationPlan, conn: Any, endpoint: str) -> MigrationPlan:
    """Carry out a plan made by :func:`plan`; each step's status and error are filled in. ``conn``: libvirt."""
    import libvirt

    if mp.prepare.status == "failed":
        for d in mp.domains:
            for s in d.steps:
                s.status = "skipped"
        return mp
    work = [d for d in mp.domains if d.changes and not d.refused]
    if not work:
        mp.prepare.status = "skipped"
        return mp
    try:
        prepare_dir(Path(mp.socket_dir), mp.group)
        mp.prepare.status = "done"
    except (OSError, KeyError) as exc:
        mp.prepare.status, mp.prepare.error = "failed", str(exc)
        for d in work:
            for s in d.steps:
                s.status = "skipped"
        return mp
    for d in work:
        _execute_domain(d, conn, endpoint, libvirt)
    return mp


def _execute_domain(d: DomainPlan, conn: Any, endpoint: str, libvirt: Any) -> None:
    steps = iter(d.steps)
    old_xml = ""

    def run(action: str, fn: Any) -> bool:
        for step in steps:
            if step.action != action:
                continue
            try:
                fn()
                step.status = "done"
                return True
            except Exception as exc:  # a failed step stops this domain, and says why
                step.status, step.error = "failed", str(exc)
                for rest in steps:
                    rest.status = "skipped"
                return False
        return True

    try:
        dom = conn.lookupByName(d.domain)
        old_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError as exc:
        for s in d.steps:
            s.status, s.error = "failed", str(exc)
        return
    new_paths = {c.old_path: c.new_path for c in d.changes}
    new_xml, _ = flip_to_server(old_xml, new_paths)

    if d.running and not run("destroy", lambda: dom.destroy() if dom.isActive() else None):
        return

    def redefine() -> None:
        conn.defineXML(new_xml)
        for s in d.steps:  # one defineXML covers every interface of the domain
            if s.action == "redefine" and s.status == "planned":
                s.status = "done"

    if not run("redefine", redefine):
        return
    for c in d.changes:
        if not run("retype-port", lambda c=c: retype_to_client(endpoint, c.port, c.new_path)):
            try:
                conn.defineXML(old_xml)
                for s in d.steps:
                    if s.action == "redefine":
                        s.status = "rolled-back"
                d.notes.append("restored the domain's previous definition after the failed port change")
            except libvirt.libvirtError as exc:
                d.notes.append(f"could not restore the previous definition: {exc}")
            return
    if d.running:
        run("start", lambda: conn.lookupByName(d.domain).create())
