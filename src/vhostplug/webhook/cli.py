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
    max_connections: int = typer.Option(
        64, "--max-connections", min=1, help="Client connections at once (~300 kB each); more wait to be accepted."
    ),
    max_reviews: int = typer.Option(8, "--max-reviews", min=1, help="Reviews read, decoded and answered at once."),
    max_review_bytes: int = typer.Option(
        8 * 1024 * 1024, "--max-review-bytes", min=1, help="Bytes the bodies of those reviews may announce together."
    ),
    max_waiting: int = typer.Option(256, "--max-waiting", min=0, help="Reviews that may wait for a slot; more: 429."),
    queue_timeout: float = typer.Option(
        3.0, "--queue-timeout", help="Seconds a review may wait for a slot before 429 (below the webhook's timeout)."
    ),
    health_port: int = typer.Option(
        0,
        "--health-port",
        help="Also answer /healthz and /readyz over plain HTTP on this port (for the kubelet's probes).",
    ),
    shutdown_delay: float = typer.Option(
        0.0,
        "--shutdown-delay",
        min=0.0,
        help="On SIGTERM, answer /readyz 503 and keep serving reviews this many seconds before stopping.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the mutating admission webhook (HTTPS)."""
    _logging(verbose)
    import asyncio

    from vhostplug.webhook.config import WebhookConfig
    from vhostplug.webhook.resolver import LightkubeResolver
    from vhostplug.webhook.server import Limits, serve

    if queue_timeout <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--queue-timeout")
    limits = Limits(max_connections, max_reviews, max_review_bytes, max_waiting, queue_timeout)

    async def main() -> None:
        resolver = LightkubeResolver.from_kubeconfig(kubeconfig, ttl=cache_ttl)
        config = WebhookConfig(resource_prefix=resource_prefix, links_dir=links_dir)
        await serve(
            host,
            port,
            cert,
            key,
            resolver,
            config,
            header_timeout=header_timeout,
            limits=limits,
            health_port=health_port or None,
            shutdown_delay=shutdown_delay,
        )

    asyncio.run(main())
