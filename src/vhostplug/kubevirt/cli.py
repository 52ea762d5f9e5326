"""`vhostplug kubevirt-sidecar` and `vhostplug webhook`: typer commands; heavy imports inside."""

from __future__ import annotations

import typer


def kubevirt_sidecar() -> None:
    """Run the KubeVirt vhostuser network binding sidecar (hooks gRPC)."""
    typer.echo("kubevirt-sidecar: not implemented yet", err=True)
    raise typer.Exit(2)


def webhook() -> None:
    """Run the mutating admission webhook (HTTPS)."""
    typer.echo("webhook: not implemented yet", err=True)
    raise typer.Exit(2)
