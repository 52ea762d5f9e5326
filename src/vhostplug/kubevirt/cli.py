"""`vhostplug kubevirt-sidecar`: the typer command; heavy imports inside."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from vhostplug.validation import DEFAULT_LINKS_DIR


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def kubevirt_sidecar(
    socket: Path | None = typer.Option(
        None, "--socket", help="Hooks socket (default /var/run/kubevirt-hooks/<CONTAINER_NAME or pid>.sock)."
    ),
    network_info: Path = typer.Option(
        Path("/etc/podinfo/network-info"), "--network-info", help="Downward API network-info file."
    ),
    links_dir: Path = typer.Option(
        DEFAULT_LINKS_DIR, "--links-dir", help="Shared folder of the stable per-interface links."
    ),
    binding_name: str = typer.Option(
        "", "--binding-name", help="Binding to serve (default: env NETWORK_BINDING_PLUGIN_NAME, else vhostuser)."
    ),
    queue_size: int = typer.Option(1024, "--queue-size", help="virtio rx/tx queue size: 256, 512 or 1024."),
    dra_metadata_dir: Path = typer.Option(
        Path("/var/run/kubernetes.io/dra-device-attributes"),
        "--dra-metadata-dir",
        help="Where kubelet puts DRA device metadata (KEP-5304) for networks that are resourceClaims.",
    ),
    dra_driver: str = typer.Option(
        "vhostuser.vhostplug.io", "--dra-driver", help="DRA driver whose devices a resourceClaim network takes."
    ),
    wait_timeout: float = typer.Option(30.0, "--wait-timeout", help="Seconds to wait for device info to appear."),
    stay: bool = typer.Option(False, "--stay-after-shutdown", help="Keep serving after the Shutdown hook."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the KubeVirt vhostuser network binding sidecar (hooks gRPC)."""
    _logging(verbose)
    from vhostplug.kubevirt import domain
    from vhostplug.kubevirt.sidecar import Binding, Sidecar, default_socket_path

    name = binding_name or os.environ.get("NETWORK_BINDING_PLUGIN_NAME") or domain.DEFAULT_BINDING_NAME
    try:
        options = domain.Options(binding_name=name, queue_size=queue_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queue-size") from exc
    binding = Binding(
        network_info=network_info,
        links_dir=links_dir,
        options=options,
        wait_timeout=wait_timeout,
        dra_metadata_dir=dra_metadata_dir,
        dra_driver=dra_driver,
    )
    Sidecar(socket or default_socket_path(), binding, exit_on_shutdown=not stay).run()
