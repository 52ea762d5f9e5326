"""`vhostplug kubevirt-sidecar` and `vhostplug webhook`: typer commands; heavy imports inside."""

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
    binding = Binding(network_info=network_info, links_dir=links_dir, options=options, wait_timeout=wait_timeout)
    Sidecar(socket or default_socket_path(), binding, exit_on_shutdown=not stay).run()


def webhook(
    cert: Path = typer.Option(
        Path("/etc/vhostplug/webhook/tls.crt"), "--cert", help="TLS certificate (re-read on change)."
    ),
    key: Path = typer.Option(
        Path("/etc/vhostplug/webhook/tls.key"), "--key", help="TLS private key (re-read on change)."
    ),
    host: str = typer.Option("0.0.0.0", "--host"),
    port: int = typer.Option(8443, "--port"),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Default: in-cluster service account, else ~/.kube/config."
    ),
    resource_prefix: str = typer.Option(
        "vhostplug.io/", "--resource-prefix", help="NAD resourceName prefix that is ours."
    ),
    links_dir: str = typer.Option(
        str(DEFAULT_LINKS_DIR), "--links-dir", help="Shared links folder in virt-launcher pods."
    ),
    cache_ttl: float = typer.Option(
        30.0, "--cache-ttl", help="Seconds a NetworkAttachmentDefinition lookup is cached."
    ),
    header_timeout: float = typer.Option(
        10.0,
        "--header-timeout",
        help="Seconds a client has for its TLS handshake, its request head, and its body; idle close.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the mutating admission webhook (HTTPS)."""
    _logging(verbose)
    import asyncio

    from vhostplug.kubevirt.webhook import LightkubeResolver, WebhookConfig, serve

    async def main() -> None:
        resolver = LightkubeResolver.from_kubeconfig(kubeconfig, ttl=cache_ttl)
        config = WebhookConfig(resource_prefix=resource_prefix, links_dir=links_dir)
        await serve(host, port, cert, key, resolver, config, header_timeout=header_timeout)

    asyncio.run(main())
