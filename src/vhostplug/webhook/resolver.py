"""Which resource a NetworkAttachmentDefinition names: read through the Kubernetes API (lightkube) and cached.

Owns: :class:`NadResolver` (the seam the review asks; it stays here rather than in ``vhostplug.protocols`` so the
webhook process never imports the node's models), :class:`LightkubeResolver` (a TTL cache of ``resourceName`` per
``(namespace, name)``, bounded at :data:`MAX_CACHE` entries; concurrent misses for one NAD share one API read) and
:class:`ResolveError` (the API could not answer).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
#: NAD lookups kept at most (expired ones are dropped first)
MAX_CACHE = 4096


class ResolveError(Exception):
    """The Kubernetes API could not tell us about a NetworkAttachmentDefinition (not: it does not exist)."""


class NadResolver(Protocol):
    async def resource_of(self, namespace: str, name: str) -> str | None:
        """The NAD's ``k8s.v1.cni.cncf.io/resourceName``; None when it has none or does not exist."""
        ...


def _http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    code = getattr(status, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


@dataclass
class LightkubeResolver:
    """NAD ``resourceName`` through the Kubernetes API (lightkube generic resource), cached ``ttl`` seconds."""

    client: Any
    ttl: float = 30.0
    cache: dict[tuple[str, str], tuple[float, str | None]] = field(default_factory=dict)
    #: the read under way per NAD: every review that misses while it runs awaits it (single flight)
    reading: dict[tuple[str, str], asyncio.Task[str | None]] = field(default_factory=dict)
    #: API reads made (each a GET of one NAD)
    reads: int = 0

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | None, ttl: float = 30.0) -> LightkubeResolver:
        from lightkube import AsyncClient, KubeConfig

        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        return cls(AsyncClient(config=config), ttl)

    async def resource_of(self, namespace: str, name: str) -> str | None:
        key = (namespace, name)
        hit = self.cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        task = self.reading.get(key)
        if task is None:
            task = asyncio.create_task(self._read(key))
            self.reading[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        # shielded: a caller that goes away does not cancel the read the others wait for
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, str], task: asyncio.Task[str | None]) -> None:
        self.reading.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have gone before it ended

    async def _read(self, key: tuple[str, str]) -> str | None:
        from lightkube.generic_resource import create_namespaced_resource

        namespace, name = key
        self.reads += 1
        nad = create_namespaced_resource(
            "k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition", "network-attachment-definitions"
        )
        try:
            # lightkube joins the path from these as given: escape them (callers validate them too)
            obj = await self.client.get(nad, name=quote(name, safe=""), namespace=quote(namespace, safe=""))
        except Exception as exc:  # ApiError, httpx status errors, transport errors (refused, TLS, timeouts)
            now = time.monotonic()
            if _http_status(exc) == 404:
                if len(self.cache) < MAX_CACHE:
                    self.cache[key] = (now + self.ttl, None)
                return None
            raise ResolveError(f"reading NetworkAttachmentDefinition {namespace}/{name}: {exc}") from exc
        now = time.monotonic()
        annotations = (obj.metadata.annotations or {}) if obj.metadata else {}
        resource = annotations.get(RESOURCE_ANNOTATION) or None
        if resource is not None and not isinstance(resource, str):
            resource = None
        if len(self.cache) >= MAX_CACHE:
            self.cache = {k: v for k, v in self.cache.items() if v[0] > now}
            if len(self.cache) >= MAX_CACHE:
                self.cache.clear()
        self.cache[key] = (now + self.ttl, resource)
        return resource
