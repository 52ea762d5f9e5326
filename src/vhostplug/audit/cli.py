"""`vhostplug audit` and `vhostplug migrate-mode`: typer commands; heavy imports inside."""

from __future__ import annotations

import typer


def audit() -> None:
    """Audit this node's vhost-user ports and VMs."""
    typer.echo("audit: not implemented yet", err=True)
    raise typer.Exit(2)


def migrate_mode() -> None:
    """Move VMs to another vhost-user mode."""
    typer.echo("migrate-mode: not implemented yet", err=True)
    raise typer.Exit(2)
