"""The `vhostplug` command line (typer). Each command imports what it needs inside its body, so `--help` stays fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(help="vhostplug: vhost-user interfaces for Kubernetes pods and KubeVirt VMs.", no_args_is_help=True)
lab_app = typer.Typer(help="A local lab: private OVS-DPDK and the whole stack on one machine.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")

# Commands owned by their packages (light modules: they import their machinery inside the command body).
from vhostplug.agent import cli as _agent_cli  # noqa: E402
from vhostplug.audit import cli as _audit_cli  # noqa: E402
from vhostplug.kubevirt import cli as _kubevirt_cli  # noqa: E402
from vhostplug.webhook import cli as _webhook_cli  # noqa: E402

app.command("agent")(_agent_cli.agent)
app.command("kubevirt-sidecar")(_kubevirt_cli.kubevirt_sidecar)
app.command("webhook")(_webhook_cli.webhook)
app.command("audit")(_audit_cli.audit)
app.command("migrate-mode")(_audit_cli.migrate_mode)


@app.command("install-cni")
def install_cni(
    dest: Path = typer.Option(Path("/opt/cni/bin"), help="The runtime's CNI binary folder."),
    name: str = typer.Option("vhostplug", help="File name of the plugin (the netconf's `type`)."),
    python: str | None = typer.Option(
        None, help="The node's interpreter for the shebang, a path on the node (default: its python3); must be >= 3.9."
    ),
    host_root: Path = typer.Option(
        Path("/"), help="Where the node's / is mounted (in the init container: /host); --python is checked there."
    ),
) -> None:
    """Install the stdlib-only CNI shim for container runtimes (run by the DaemonSet's init container). The interpreter
    is checked on the node first; a node without a suitable one gets an error naming it, and nothing is written."""
    from vhostplug.cni.install import InterpreterError, install_shim

    try:
        typer.echo(str(install_shim(dest, name=name, python=python, host_root=host_root)))
    except InterpreterError as exc:
        typer.echo(f"vhostplug install-cni: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command(
    "podinfo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False
)
def podinfo(ctx: typer.Context) -> None:
    """Find this pod's vhost-user / vDPA interfaces (see `vhostplug podinfo --help`)."""
    from vhostplug.podinfo.main import main as podinfo_main

    sys.exit(podinfo_main(list(ctx.args)))


DEFAULT_LAB_DIR = Path("/run/vhostplug-lab")


@lab_app.command("up")
def lab_up(
    run_dir: Path = typer.Option(DEFAULT_LAB_DIR, help="Folder of the lab's own state."),
    hugepages: bool | None = typer.Option(
        None,
        "--hugepages/--no-hugepages",
        help="OVS-DPDK on 2 MB hugepages (as a node runs it) or --no-huge; default: hugepages when the pool has room.",
    ),
    nodes: int = typer.Option(1, "--nodes", help="Lab nodes: 1, or 2 joined by an uplink per network."),
) -> None:
    """Start the private OVS-DPDK and the node agent of each node (harmless when already up)."""
    from vhostplug.lab.cluster import cluster_up

    status = cluster_up(run_dir, nodes=nodes, hugepages=hugepages)
    typer.echo(json.dumps(status, indent=2))


@lab_app.command("status")
def lab_status(
    run_dir: Path = typer.Option(DEFAULT_LAB_DIR, help="Folder of the lab's own state."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show what the lab runs (every node's part when it has two)."""
    from vhostplug.lab.cluster import cluster_status

    status = cluster_status(run_dir)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vhostplug lab")
    table.add_column("key")
    table.add_column("value")
    for k, v in status.items():
        table.add_row(k, str(v))
    Console().print(table)


@lab_app.command("down")
def lab_down(run_dir: Path = typer.Option(DEFAULT_LAB_DIR, help="Folder of the lab's own state.")) -> None:
    """Stop everything the lab started on every node, also after a crash."""
    from vhostplug.lab.cluster import cluster_down

    for line in cluster_down(run_dir):
        typer.echo(line)


@lab_app.command("apiserver", hidden=True)
def lab_apiserver(run_dir: Path = typer.Option(DEFAULT_LAB_DIR, help="Folder of the lab's own state.")) -> None:
    """Serve the lab's stand-in kube-apiserver until SIGTERM (`lab up` starts it in the background)."""
    from vhostplug.lab.apiserverd import serve

    serve(run_dir)


@lab_app.command("demo")
def lab_demo(
    run_dir: Path = typer.Option(DEFAULT_LAB_DIR, help="Folder of the lab's own state."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    keep: bool = typer.Option(False, help="Leave the lab running afterwards."),
    nodes: int = typer.Option(1, "--nodes", help="Lab nodes: 1, or 2 joined by an uplink per network."),
) -> None:
    """Run the whole stack end to end on this machine and report."""
    from vhostplug.lab.demo import run_demo

    sys.exit(run_demo(run_dir, json_out=json_out, keep=keep, nodes=nodes))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
