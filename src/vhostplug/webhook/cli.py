"""`vhostplug webhook`: the typer command; the server's imports inside its body so `--help` stays fast."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from vhostplug.validation import DEFAULT_LINKS_DIR


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


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

    from vhostplug.webhook.config import WebhookConfig
    from vhostplug.webhook.resolver import LightkubeResolver
    from vhostplug.webhook.server import serve

    async def main() -> None:
        resolver = LightkubeResolver.from_kubeconfig(kubeconfig, ttl=cache_ttl)
        config = WebhookConfig(resource_prefix=resource_prefix, links_dir=links_dir)
        await serve(host, port, cert, key, resolver, config, header_timeout=header_timeout)

    asyncio.run(main())
