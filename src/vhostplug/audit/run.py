"""Gather the live inputs (OVSDB, libvirt, process identities) for the audit and the migration, and run them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vhostplug.audit import access, migrate
from vhostplug.audit.analyze import AuditReport, Finding, Severity, analyze
from vhostplug.audit.domains import LibvirtUnavailable, open_libvirt, read_domains
from vhostplug.audit.ovs import OvsVhostPort, read_ports
from vhostplug.dataplane.ovsdb_rpc import OvsdbRpcError

_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def run_audit(
    endpoint: str,
    rundir: str,
    libvirt_uri: str | None,
    qemu_user: str | None = None,
    qemu_group: str | None = None,
) -> AuditReport:
    """Audit this node; unreachable OVSDB is an error finding, unreachable libvirt a warning one."""
    pre: list[Finding] = []
    ports: list[OvsVhostPort] = []
    sock_dir = ""
    try:
        ports, sock_dir = read_ports(endpoint, rundir)
    except OvsdbRpcError as exc:
        pre.append(Finding(Severity.ERROR, "ovsdb-unreachable", endpoint, str(exc)))
    consumers = []
    if libvirt_uri:
        try:
            consumers = read_domains(libvirt_uri)
        except LibvirtUnavailable as exc:
            pre.append(Finding(Severity.WARNING, "libvirt-unavailable", libvirt_uri, f"{exc}; VMs not audited"))
    qemu = access.qemu_principal(qemu_user, qemu_group)
    ovs = access.ovs_principal(rundir)
    report = analyze(ports, consumers, qemu, ovs)
    report.findings = sorted(pre + report.findings, key=lambda f: (_ORDER[f.severity], f.subject, f.code))
    report.context = {
        "ovsdb": endpoint,
        "ovs_rundir": rundir,
        "vhost_sock_dir": sock_dir,
        "libvirt": libvirt_uri or "",
        "qemu": _who(qemu),
        "ovs": _who(ovs) or "unknown (no ovs-vswitchd pidfile in the run dir)",
    }
    return report


def _who(p: access.Principal | None) -> str:
    return f"{p.name} uid={p.uid} groups={','.join(p.group_names())} ({p.origin})" if p else ""


def domain_states(conn: Any) -> list[migrate.DomainState]:
    import libvirt

    out = []
    for dom in conn.listAllDomains():
        try:
            out.append(
                migrate.DomainState(
                    name=dom.name(),
                    running=bool(dom.isActive()),
                    persistent=bool(dom.isPersistent()),
                    inactive_xml=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
                )
            )
        except libvirt.libvirtError:
            continue
    return out


def run_migration(
    endpoint: str,
    rundir: str,
    libvirt_uri: str,
    socket_dir: Path,
    group: str,
    force_running: bool,
    only: list[str] | None,
    dry_run: bool,
) -> migrate.MigrationPlan:
    """Plan (and unless ``dry_run``, execute) the move to server mode. Raises on unreachable OVSDB / libvirt."""
    ports, _ = read_ports(endpoint, rundir)
    conn = open_libvirt(libvirt_uri)
    try:
        mp = migrate.plan(
            domain_states(conn),
            ports,
            socket_dir=socket_dir,
            group=group,
            force_running=force_running,
            only=only,
            qemu=access.qemu_principal(),
            ovs=access.ovs_principal(rundir),
        )
        if not dry_run:
            migrate.execute(mp, conn, endpoint)
        return mp
    finally:
        conn.close()


__all__ = ["LibvirtUnavailable", "OvsdbRpcError", "domain_states", "run_audit", "run_migration"]
