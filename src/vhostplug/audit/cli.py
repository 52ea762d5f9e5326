"""`vhostplug audit` and `vhostplug migrate-mode`: typer commands; heavy imports (rich, lxml, libvirt) inside."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _endpoint(ovsdb: str | None) -> str:
    from vhostplug.audit.ovs import default_endpoint

    return ovsdb or default_endpoint()


def audit(
    ovsdb: str | None = typer.Option(
        None,
        "--ovsdb",
        metavar="ENDPOINT",
        help="OVSDB unix endpoint (default: $OVS_RUNDIR/db.sock or /var/run/openvswitch/db.sock)",
    ),
    ovs_rundir: str | None = typer.Option(
        None,
        "--ovs-rundir",
        help="OVS_RUNDIR (vhost-sock-dir is relative to it) (default: $OVS_RUNDIR or the endpoint's folder)",
    ),
    libvirt_uri: str = typer.Option("qemu:///system", "--libvirt-uri", metavar="URI", help="libvirt URI"),
    no_libvirt: bool = typer.Option(False, "--no-libvirt", help="Audit OVS only."),
    qemu_user: str | None = typer.Option(
        None, "--qemu-user", help="QEMU's user (default: qemu.conf, libvirt-qemu/qemu)"
    ),
    qemu_group: str | None = typer.Option(None, "--qemu-group", help="QEMU's group (default: qemu.conf)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Audit this node's vhost-user ports (OVSDB) and VMs (libvirt), joined by socket path. Exit 1 on errors."""
    from vhostplug.audit.ovs import default_rundir
    from vhostplug.audit.run import run_audit

    endpoint = _endpoint(ovsdb)
    rundir = ovs_rundir or default_rundir(endpoint)
    report = run_audit(endpoint, rundir, None if no_libvirt else libvirt_uri, qemu_user, qemu_group)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        from rich.console import Console

        from vhostplug.audit.render import print_audit

        print_audit(report, Console())
    raise typer.Exit(1 if report.errors else 0)


def migrate_mode(
    to: str = typer.Option(..., "--to", help="Target mode of QEMU: only 'server' (OVS dpdkvhostuserclient)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan, change nothing."),
    socket_dir: Path = typer.Option(Path("/var/lib/vhost_sockets"), "--socket-dir", help="Folder for QEMU's sockets."),
    group: str = typer.Option("hugetlbfs", "--group", help="Group shared by QEMU and OVS that owns the folder."),
    force_running: bool = typer.Option(False, "--force-running", help="Destroy, redefine and start running domains."),
    domain: list[str] | None = typer.Option(None, "--domain", help="Only this domain (repeatable)."),
    ovsdb: str | None = typer.Option(None, "--ovsdb", metavar="ENDPOINT", help="OVSDB unix endpoint"),
    ovs_rundir: str | None = typer.Option(None, "--ovs-rundir", help="OVS_RUNDIR (for vhost-sock-dir)"),
    libvirt_uri: str = typer.Option("qemu:///system", "--libvirt-uri", metavar="URI", help="libvirt URI"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Move VMs' vhost-user interfaces from client mode (OVS dpdkvhostuser) to server mode (dpdkvhostuserclient)."""
    if to != "server":
        typer.echo(
            f"migrate-mode: --to {to!r} is not supported: only 'server' (moving to the deprecated client mode "
            "is not offered)",
            err=True,
        )
        raise typer.Exit(2)
    from vhostplug.audit.ovs import default_rundir
    from vhostplug.audit.run import LibvirtUnavailable, OvsdbRpcError, run_migration

    endpoint = _endpoint(ovsdb)
    rundir = ovs_rundir or default_rundir(endpoint)
    try:
        mp = run_migration(endpoint, rundir, libvirt_uri, socket_dir, group, force_running, domain, dry_run)
    except (OvsdbRpcError, LibvirtUnavailable) as exc:
        typer.echo(f"migrate-mode: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, **mp.to_json()}, indent=2))
    else:
        from rich.console import Console

        from vhostplug.audit.render import print_plan

        print_plan(mp, Console(), dry_run)
    raise typer.Exit(1 if mp.failed else 0)
