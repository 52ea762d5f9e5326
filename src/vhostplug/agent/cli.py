"""`vhostplug agent`: the typer command; imports the agent only when run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def agent(
    config: Optional[Path] = typer.Option(None, "--config", help="Agent configuration file (YAML or JSON)."),
    ovsdb: Optional[str] = typer.Option(None, "--ovsdb", help="OVSDB endpoint, e.g. unix:/run/openvswitch/db.sock."),
    listen: Optional[Path] = typer.Option(None, "--listen", help="Unix socket the CNI shim talks to."),
    socket_root: Optional[Path] = typer.Option(None, "--socket-root", help="Host root of the socket folders."),
    device_plugin_dir: Optional[Path] = typer.Option(None, "--device-plugin-dir", help="kubelet's device-plugin folder."),
    devinfo_dir: Optional[Path] = typer.Option(None, "--devinfo-dir", help="Root of the device-info spec files."),
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
