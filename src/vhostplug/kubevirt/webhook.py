"""The mutating admission webhook (aiohttp, TLS): device requests and volumes for pods on vhostplug networks.

Owns: reading AdmissionReview v1 requests, deciding from a pod's ``k8s.v1.cni.cncf.io/networks`` annotation which of
its networks are ours (their NetworkAttachmentDefinition's ``k8s.v1.cni.cncf.io/resourceName``, read with lightkube and
cached with a TTL), building the JSONPatch, and serving it over TLS with the cert/key re-read when they change.

- virt-launcher pods (label ``kubevirt.io=virt-launcher``): ``<resource>: n`` requests and limits on ``compute`` and
  the shared links folder (an emptyDir) mounted into ``compute`` and the hook sidecar containers.
- other pods: the device per network on the first container (or the one named by annotation
  ``vhostplug.io/container``) and the downward-API volume at ``/etc/podnetinfo`` (``annotations``, ``labels``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

log = logging.getLogger("vhostplug.kubevirt.webhook")

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
CONTAINER_ANNOTATION = "vhostplug.io/container"
LAUNCHER_LABEL = ("kubevirt.io", "virt-launcher")
COMPUTE = "compute"
SIDECAR_PREFIX = "hook-sidecar-"
LINKS_VOLUME = "vhostplug-links"
PODINFO_VOLUME = "vhostplug-podnetinfo"
PODINFO_DIR = "/etc/podnetinfo"


class ResolveError(Exception):
    """The Kubernetes API could not tell us about a NetworkAttachmentDefinition (not: it does not exist)."""


class ReviewError(ValueError):
    """The AdmissionReview or its pod is malformed."""


class NadResolver(Protocol):
    async def resource_of(self, namespace: str, name: str) -> str | None: ...


@dataclass(frozen=True)
class Network:
    namespace: str
    name: str


def parse_networks(value: str, default_namespace: str) -> list[Network]:
    """The Multus networks annotation: a JSON list of ``{name, namespace?}`` or ``ns/name@if, name`` text."""
    value = value.strip()
    if not value:
        return []
    out = []
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError as exc:
            raise ReviewError(f"{NETWORKS_ANNOTATION} is not valid JSON: {exc}") from exc
        if not isinstance(items, list):
            raise ReviewError(f"{NETWORKS_ANNOTATION} must be a JSON list")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise ReviewError(f"{NETWORKS_ANNOTATION}: every entry needs a name, got {item!r}")
            out.append(Network(str(item.get("namespace") or default_namespace), item["name"]))
        return out
    for part in value.split(","):
        ref = part.strip().split("@", 1)[0]
        if not ref:
            continue
        ns, _, name = ref.rpartition("/")
        out.append(Network(ns or default_namespace, name))
    return out


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

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | None, ttl: float = 30.0) -> LightkubeResolver:
        from lightkube import AsyncClient, KubeConfig

        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        return cls(AsyncClient(config=config), ttl)

    async def resource_of(self, namespace: str, name: str) -> str | None:
        from lightkube.generic_resource import create_namespaced_resource

        key = (namespace, name)
        now = time.monotonic()
        hit = self.cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        nad = create_namespaced_resource(
            "k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition", "network-attachment-definitions"
        )
        try:
            obj = await self.client.get(nad, name=name, namespace=namespace)
        except Exception as exc:  # ApiError, httpx status errors, transport errors (refused, TLS, timeouts)
            if _http_status(exc) == 404:
                self.cache[key] = (now + self.ttl, None)
                return None
            raise ResolveError(f"reading NetworkAttachmentDefinition {namespace}/{name}: {exc}") from exc
        annotations = (obj.metadata.annotations or {}) if obj.metadata else {}
        resource = annotations.get(RESOURCE_ANNOTATION) or None
        self.cache[key] = (now + self.ttl, resource)
        return resource


@dataclass(frozen=True)
class WebhookConfig:
    resource_prefix: str = "vhostplug.io/"
    links_dir: str = "/var/run/vhostplug-links"
    podinfo_dir: str = PODINFO_DIR


def _ptr(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Patch:
    """Builds JSONPatch ops against a working copy of the pod, so later ops see earlier ones (no duplicates)."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = json.loads(json.dumps(pod))
        self.ops: list[dict[str, Any]] = []

    def ensure(self, path: list[str | int], default: Any) -> Any:
        node: Any = self.pod
        for i, key in enumerate(path):
            if isinstance(node, dict):
                if node.get(key) is None:
                    node[key] = json.loads(json.dumps(default)) if i == len(path) - 1 else {}
                    self.ops.append(
                        {"op": "add", "path": _ptr(*path[: i + 1]), "value": json.loads(json.dumps(node[key]))}
                    )
                node = node[key]
            else:
                node = node[key]
        return node

    def set(self, path: list[str | int], value: Any) -> None:
        parent = self.ensure(path[:-1], {})
        if parent.get(path[-1]) == value:
            return
        parent[path[-1]] = value
        self.ops.append({"op": "add", "path": _ptr(*path), "value": value})

    def append(self, path: list[str | int], value: Any) -> None:
        lst = self.ensure(path, [])
        lst.append(value)
        self.ops.append({"op": "add", "path": _ptr(*path) + "/-", "value": value})


def _request_devices(patch: _Patch, index: int, counts: Counter[str]) -> None:
    container = patch.pod["spec"]["containers"][index]
    for resource, n in sorted(counts.items()):
        for kind in ("requests", "limits"):
            have = ((container.get("resources") or {}).get(kind) or {}).get(resource)
            try:
                have_n = int(have) if have is not None else 0
            except (TypeError, ValueError):
                have_n = 0
            if have_n < n:
                patch.set(["spec", "containers", index, "resources", kind, resource], str(n))


def _mount(patch: _Patch, index: int, volume: str, path: str, read_only: bool = False) -> None:
    mounts = patch.pod["spec"]["containers"][index].get("volumeMounts") or []
    if any(m.get("name") == volume or m.get("mountPath") == path for m in mounts):
        return
    mount: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    patch.append(["spec", "containers", index, "volumeMounts"], mount)


def _volume(patch: _Patch, volume: dict[str, Any]) -> None:
    if any(v.get("name") == volume["name"] for v in patch.pod["spec"].get("volumes") or []):
        return
    patch.append(["spec", "volumes"], volume)


def build_patch(
    pod: dict[str, Any], counts: Counter[str], config: WebhookConfig
) -> tuple[list[dict[str, Any]], list[str]]:
    """JSONPatch ops for a pod whose networks need ``counts`` devices per resource; plus warnings."""
    warnings: list[str] = []
    if not counts:
        return [], warnings
    containers = pod["spec"]["containers"]
    names = [c.get("name") for c in containers]
    patch = _Patch(pod)
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get(LAUNCHER_LABEL[0]) == LAUNCHER_LABEL[1]:
        if COMPUTE not in names:
            warnings.append("vhostplug: virt-launcher pod without a 'compute' container; not mutated")
            return [], warnings
        _request_devices(patch, names.index(COMPUTE), counts)
        _volume(patch, {"name": LINKS_VOLUME, "emptyDir": {}})
        for i, name in enumerate(names):
            if name == COMPUTE or str(name).startswith(SIDECAR_PREFIX):
                _mount(patch, i, LINKS_VOLUME, config.links_dir)
        if not any(str(n).startswith(SIDECAR_PREFIX) for n in names):
            warnings.append("vhostplug: no hook sidecar container found; is the vhostuser binding registered?")
        return patch.ops, warnings
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    wanted = annotations.get(CONTAINER_ANNOTATION)
    if wanted is not None and wanted not in names:
        warnings.append(f"vhostplug: container {wanted!r} named by {CONTAINER_ANNOTATION} not found; using the first")
    index = names.index(wanted) if wanted in names else 0
    _request_devices(patch, index, counts)
    _volume(
        patch,
        {
            "name": PODINFO_VOLUME,
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                ]
            },
        },
    )
    for i in range(len(containers)):
        _mount(patch, i, PODINFO_VOLUME, config.podinfo_dir, read_only=True)
    return patch.ops, warnings


async def count_devices(
    pod: dict[str, Any], namespace: str, resolver: NadResolver, config: WebhookConfig
) -> Counter[str]:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ReviewError("metadata.annotations must be an object")
    counts: Counter[str] = Counter()
    raw = annotations.get(NETWORKS_ANNOTATION)
    if not isinstance(raw, str):
        return counts
    for net in parse_networks(raw, namespace):
        resource = await resolver.resource_of(net.namespace, net.name)
        if resource and resource.startswith(config.resource_prefix):
            counts[resource] += 1
    return counts


def _response(
    uid: str,
    allowed: bool = True,
    ops: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
    message: str = "",
    code: int = 0,
) -> dict[str, Any]:
    resp: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if ops:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    if warnings:
        resp["warnings"] = warnings
    if message:
        resp["status"] = {"message": message, "code": code or (200 if allowed else 403)}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}


async def review(body: Any, resolver: NadResolver, config: WebhookConfig) -> dict[str, Any]:
    """Answer one AdmissionReview (already JSON-decoded). Raises :class:`ReviewError` when no uid can be echoed."""
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview" or not isinstance(body.get("request"), dict):
        raise ReviewError("body is not an AdmissionReview with a request")
    req = body["request"]
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("AdmissionReview.request has no uid")
    pod = req.get("object")
    kind = (req.get("kind") or {}).get("kind") if isinstance(req.get("kind"), dict) else None
    if kind != "Pod" or not isinstance(pod, dict):
        return _response(uid, warnings=[f"vhostplug webhook: only Pods are mutated, not {kind!r}; admitted unchanged"])
    spec = pod.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list) or not spec["containers"]:
        return _response(uid, warnings=["vhostplug webhook: pod has no spec.containers; admitted unchanged"])
    namespace = str(req.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default")
    try:
        counts = await count_devices(pod, namespace, resolver, config)
    except ReviewError as exc:
        return _response(uid, allowed=False, message=f"vhostplug: {exc}", code=400)
    except ResolveError as exc:
        # the pod names networks we may own but we cannot tell: admitting it unchanged would start it without its
        # devices and fail later in a confusing way; deny so the creator retries.
        return _response(uid, allowed=False, message=f"vhostplug: {exc}; retry later", code=503)
    ops, warnings = build_patch(pod, counts, config)
    if ops:
        log.info("pod %s/%s: %s", namespace, (pod.get("metadata") or {}).get("name") or "(generated)", dict(counts))
    return _response(uid, ops=ops, warnings=warnings)


class CertReloader:
    """An SSLContext whose cert/key are re-read when either file's mtime (or size) changes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.stamp: tuple[float, int, float, int] | None = None
        self.reloads = 0
        self.check(initial=True)

    def _stamp(self) -> tuple[float, int, float, int]:
        c, k = os.stat(self.cert), os.stat(self.key)
        return (c.st_mtime, c.st_size, k.st_mtime, k.st_size)

    def check(self, initial: bool = False) -> bool:
        try:
            stamp = self._stamp()
        except OSError as exc:
            if initial:
                raise
            log.warning("cannot stat TLS files: %s (keeping the loaded cert)", exc)
            return False
        if stamp == self.stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            if initial:
                raise
            log.warning("TLS cert/key changed but do not load (%s); keeping the old one until they do", exc)
            return False
        self.stamp = stamp
        if not initial:
            self.reloads += 1
            log.info("reloaded TLS certificate %s", self.cert)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()


def make_app(resolver: NadResolver, config: WebhookConfig, certs: CertReloader | None = None) -> web.Application:
    @web.middleware
    async def reload_certs(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if certs is not None:
            certs.check()
        return await handler(request)

    async def mutate(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            return web.json_response({"error": f"request body is not JSON: {exc}"}, status=400)
        try:
            return web.json_response(await review(body, resolver, config))
        except ReviewError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except Exception as exc:  # never crash the server on one request
            log.exception("mutate failed")
            uid = body.get("request", {}).get("uid", "") if isinstance(body, dict) else ""
            if isinstance(uid, str) and uid:
                return web.json_response(
                    _response(uid, allowed=False, message=f"vhostplug: internal error: {exc}", code=500)
                )
            return web.json_response({"error": f"internal error: {exc}"}, status=500)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[reload_certs], client_max_size=8 * 1024 * 1024)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(
    host: str,
    port: int,
    cert: Path,
    key: Path,
    resolver: NadResolver,
    config: WebhookConfig,
    reload_interval: float = 1.0,
) -> None:
    certs = CertReloader(cert, key)
    app = make_app(resolver, config, certs)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=certs.context)
    await site.start()
    log.info("webhook listening on https://%s:%d/mutate", host, port)
    watcher = asyncio.create_task(certs.watch(reload_interval))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await runner.cleanup()
