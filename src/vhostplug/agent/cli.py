"""`vhostplug agent`: the typer command; imports the agent only when run."""

from __future__ import annotations

from pathlib import Path

import typer


def agent(
    config: Path | None = typer.Option(None, "--config", help="Agent configuration file (YAML or JSON)."),
    ovsdb: str | None = typer.Option(None, "--ovsdb", help="OVSDB endpoint, e.g. unix:/run/openvswitch/db.sock."),
    listen: Path | None = typer.Option(None, "--listen", help="Unix socket the CNI shim talks to."),
    socket_root: Path | None = typer.Option(None, "--socket-root", help="Host root of the socket folders."),
    device_plugin_dir: Path | None = typer.Option(
        None,
        "--device-plugin-dir",
        help="kubelet's device-plugin folder; also enables the device plugin (with its defaults when the "
        "configuration has no devicePlugin block).",
    ),
    devinfo_dir: Path | None = typer.Option(None, "--devinfo-dir", help="Root of the device-info spec files."),
) -> None:
    """Run the node agent: CNI server, device plugin, metrics."""
    from vhostplug.agent.main import run

    raise typer.Exit(
        run(
            config_file=config,
            ovsdb=ovsdb,
            listen=listen,
            socket_root=socket_root,
            device_plugin_dir=device_plugin_dir,
            devinfo_dir=devinfo_dir,
        )
    )
