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
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import re
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web

from vhostplug.cni.wire import depth as json_depth
from vhostplug.validation import DEFAULT_LINKS_DIR

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

#: bodies larger than this are refused with 413 before they are read (a review carries the pod and, on UPDATE,
#: the old pod; kube-apiserver caps one object at about 3 MiB)
MAX_BODY = 8 * 1024 * 1024
#: deeper JSON is refused (a pod nests about 12 levels; Python's decoder recurses)
MAX_DEPTH = 64
#: networks one pod may name (each unknown one costs an API request)
MAX_NETWORKS = 64
#: seconds a client has for the TLS handshake, for its request line and headers, and for its body
HANDSHAKE_TIMEOUT = 10.0
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
#: after a body this large is answered, freed heap is handed back to the OS (glibc malloc_trim)
TRIM_AFTER = 1024 * 1024
#: TLS 1.2 suites: ECDHE with AEAD only (no CBC, no RSA key exchange); TLS 1.3 suites are all AEAD
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


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


def check_namespace(value: object, where: str) -> str:
    """A namespace: a DNS-1123 label (what kube-apiserver accepts), else :class:`ReviewError`."""
    if not isinstance(value, str) or not _DNS1123_LABEL.fullmatch(value):
        raise ReviewError(f"{where}: {value!r} is not a namespace (DNS-1123 label: a-z, 0-9, '-', at most 63)")
    return value


def check_network_name(value: object, where: str) -> str:
    """A NetworkAttachmentDefinition name: a DNS-1123 subdomain, else :class:`ReviewError`."""
    if not isinstance(value, str) or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ReviewError(
            f"{where}: {value!r} is not a network name (DNS-1123 subdomain: a-z, 0-9, '-', '.', at most 253)"
        )
    return value


def parse_networks(value: str, default_namespace: str, limit: int = MAX_NETWORKS) -> list[Network]:
    """The Multus networks annotation: a JSON list of ``{name, namespace?}`` or ``ns/name@if, name`` text.

    Every name and namespace is checked (DNS-1123) before anything is looked up; more than ``limit`` entries is
    refused. Raises :class:`ReviewError` saying which entry is wrong.
    """
    value = value.strip()
    if not value:
        return []
    out = []
    if value.startswith("["):
        try:
            items = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise ReviewError(f"{NETWORKS_ANNOTATION} is not valid JSON: {exc}") from exc
        if not isinstance(items, list):
            raise ReviewError(f"{NETWORKS_ANNOTATION} must be a JSON list")
        if len(items) > limit:
            raise ReviewError(f"{NETWORKS_ANNOTATION} names {len(items)} networks; at most {limit} are allowed")
        for n, item in enumerate(items):
            where = f"{NETWORKS_ANNOTATION}[{n}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise ReviewError(f"{where}: every entry needs a name, got {_short(item)}")
            ns = item.get("namespace")
            namespace = default_namespace if ns is None or ns == "" else check_namespace(ns, f"{where}.namespace")
            out.append(Network(namespace, check_network_name(item["name"], f"{where}.name")))
        return out
    parts = [p.strip() for p in value.split(",")]
    if len(parts) > limit:
        raise ReviewError(f"{NETWORKS_ANNOTATION} names {len(parts)} networks; at most {limit} are allowed")
    for part in parts:
        ref = part.split("@", 1)[0]
        if not ref:
            continue
        pieces = ref.split("/")
        if len(pieces) > 2:
            raise ReviewError(f"{NETWORKS_ANNOTATION}: {_short(ref)} is not of the form [namespace/]name[@interface]")
        ns = check_namespace(pieces[0], NETWORKS_ANNOTATION) if len(pieces) == 2 else default_namespace
        out.append(Network(ns, check_network_name(pieces[-1], NETWORKS_ANNOTATION)))
    return out


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    code = getattr(status, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


#: NAD lookups kept at most (expired ones are dropped first)
MAX_CACHE = 4096


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
            # lightkube joins the path from these as given: escape them (callers validate them too)
            obj = await self.client.get(nad, name=quote(name, safe=""), namespace=quote(namespace, safe=""))
        except Exception as exc:  # ApiError, httpx status errors, transport errors (refused, TLS, timeouts)
            if _http_status(exc) == 404:
                if len(self.cache) < MAX_CACHE:
                    self.cache[key] = (now + self.ttl, None)
                return None
            raise ResolveError(f"reading NetworkAttachmentDefinition {namespace}/{name}: {exc}") from exc
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


@dataclass(frozen=True)
class WebhookConfig:
    resource_prefix: str = "vhostplug.io/"
    links_dir: str = str(DEFAULT_LINKS_DIR)
    podinfo_dir: str = PODINFO_DIR
    max_networks: int = MAX_NETWORKS


def _ptr(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _working_copy(pod: dict[str, Any]) -> dict[str, Any]:
    """A copy of just what a patch may change (containers' resources and volumeMounts, spec.volumes), sharing the
    rest with ``pod``: a 5 MB pod is not copied whole."""
    spec = dict(pod.get("spec") or {})
    containers = []
    for c in spec.get("containers") or []:
        c = dict(c)
        if isinstance(c.get("resources"), dict):
            c["resources"] = {k: dict(v) if isinstance(v, dict) else v for k, v in c["resources"].items()}
        if isinstance(c.get("volumeMounts"), list):
            c["volumeMounts"] = list(c["volumeMounts"])
        containers.append(c)
    spec["containers"] = containers
    if isinstance(spec.get("volumes"), list):
        spec["volumes"] = list(spec["volumes"])
    return {**pod, "spec": spec}


class _Patch:
    """Builds JSONPatch ops against a working copy of the pod, so later ops see earlier ones (no duplicates)."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = _working_copy(pod)
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
    """Devices per resource the pod's networks need; each distinct network is looked up once."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    counts: Counter[str] = Counter()
    raw = annotations.get(NETWORKS_ANNOTATION)
    if not isinstance(raw, str):
        return counts
    resources: dict[Network, str | None] = {}
    for net in parse_networks(raw, namespace, config.max_networks):
        if net not in resources:
            resources[net] = await resolver.resource_of(net.namespace, net.name)
        resource = resources[net]
        if resource and resource.startswith(config.resource_prefix):
            counts[resource] += 1
    return counts


_KIND_NAMES: dict[type[Any], str] = {dict: "an object", list: "a list", str: "a string"}


def _expect(value: Any, kind: type[Any], where: str, optional: bool = True) -> Any:
    if not (optional and value is None) and not isinstance(value, kind):
        name = _KIND_NAMES.get(kind, kind.__name__)
        raise ReviewError(f"{where} must be {name}, not {type(value).__name__}")
    return value


def check_pod(pod: dict[str, Any]) -> None:
    """The pod fields this webhook reads or patches have the types Kubernetes gives them, else :class:`ReviewError`."""
    meta = _expect(pod.get("metadata"), dict, "metadata") or {}
    for key in ("name", "generateName", "namespace"):
        _expect(meta.get(key), str, f"metadata.{key}")
    for key in ("labels", "annotations"):
        for k, v in (_expect(meta.get(key), dict, f"metadata.{key}") or {}).items():
            _expect(v, str, f"metadata.{key}[{_short(k, 40)}]")
    spec = _expect(pod.get("spec"), dict, "spec") or {}
    for n, volume in enumerate(_expect(spec.get("volumes"), list, "spec.volumes") or []):
        _expect(volume, dict, f"spec.volumes[{n}]", optional=False)
        _expect(volume.get("name"), str, f"spec.volumes[{n}].name")
    for n, c in enumerate(_expect(spec.get("containers"), list, "spec.containers") or []):
        where = f"spec.containers[{n}]"
        if not isinstance(c, dict):
            raise ReviewError(f"{where} must be an object, not {type(c).__name__}")
        _expect(c.get("name"), str, f"{where}.name")
        resources = _expect(c.get("resources"), dict, f"{where}.resources") or {}
        for kind in ("requests", "limits"):
            _expect(resources.get(kind), dict, f"{where}.resources.{kind}")
        for m, mount in enumerate(_expect(c.get("volumeMounts"), list, f"{where}.volumeMounts") or []):
            _expect(mount, dict, f"{where}.volumeMounts[{m}]", optional=False)


TOO_DEEP = f"request body is nested deeper than {MAX_DEPTH} levels"


def decode(body: bytes) -> Any:
    """The request body as JSON, or :class:`ReviewError` (not UTF-8 JSON, or too deep for the decoder)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ReviewError(TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReviewError(f"request body is not JSON: {exc}") from None


def _uid_of(body: Any) -> str | None:
    req = body.get("request") if isinstance(body, dict) else None
    uid = req.get("uid") if isinstance(req, dict) else None
    return uid if isinstance(uid, str) and uid else None


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
    """Answer one AdmissionReview (already JSON-decoded). Raises :class:`ReviewError` when no uid can be echoed.

    A malformed pod (a field of the wrong type, a network name that is not a Kubernetes name, too many networks) is
    denied with code 400 and a message naming the field; nothing is looked up for it.
    """
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview" or not isinstance(body.get("request"), dict):
        raise ReviewError("body is not an AdmissionReview with a request")
    req = body["request"]
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("AdmissionReview.request has no uid")
    pod = req.get("object")
    kind = (req.get("kind") or {}).get("kind") if isinstance(req.get("kind"), dict) else None
    if kind == "Pod" and not isinstance(pod, dict):
        message = f"vhostplug: request.object must be an object, not {type(pod).__name__}"
        return _response(uid, allowed=False, message=message, code=400)
    if kind != "Pod" or not isinstance(pod, dict):
        return _response(
            uid, warnings=[f"vhostplug webhook: only Pods are mutated, not {_short(kind)}; admitted unchanged"]
        )
    try:
        check_pod(pod)
        raw_ns = req.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default"
        namespace = check_namespace(raw_ns, "request.namespace")
    except ReviewError as exc:
        return _response(uid, allowed=False, message=f"vhostplug: {exc}", code=400)
    spec = pod.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list) or not spec["containers"]:
        return _response(uid, warnings=["vhostplug webhook: pod has no spec.containers; admitted unchanged"])
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
        self.context.set_ciphers(TLS12_CIPHERS)
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


_libc: Any = None


def release_memory() -> None:
    """Hand freed heap back to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    global _libc
    gc.collect()  # request objects may sit in reference cycles that hold the body
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def _too_large(size: int | None) -> web.Response:
    what = f"{size} bytes" if size is not None else "the request body"
    return web.json_response({"error": f"{what} is more than the {MAX_BODY} bytes a review may have"}, status=413)


async def answer(raw: bytes, resolver: NadResolver, config: WebhookConfig) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON answer for one request body: 200 with an AdmissionReview whenever the body is a review
    with a uid (allowed, or denied saying why), else 400 with ``{"error": ...}``."""
    try:
        body = decode(raw)
    except ReviewError as exc:
        return 400, {"error": str(exc)}
    if json_depth(body) > MAX_DEPTH:
        uid = _uid_of(body)
        if uid is None:
            return 400, {"error": TOO_DEEP}
        return 200, _response(uid, allowed=False, message=f"vhostplug: {TOO_DEEP}", code=400)
    try:
        return 200, await review(body, resolver, config)
    except ReviewError as exc:
        return 400, {"error": str(exc)}
    except Exception as exc:  # never crash the server on one request
        log.exception("mutate failed")
        uid = _uid_of(body)
        if uid is not None:
            return 200, _response(uid, allowed=False, message=f"vhostplug: internal error: {exc}", code=500)
        return 500, {"error": f"internal error: {exc}"}


def make_app(
    resolver: NadResolver,
    config: WebhookConfig,
    certs: CertReloader | None = None,
    body_timeout: float = BODY_TIMEOUT,
) -> web.Application:
    @web.middleware
    async def reload_certs(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if certs is not None:
            certs.check()
        return await handler(request)

    async def mutate(request: web.Request) -> web.Response:
        # refuse what is too large before reading it; a chunked body is read up to the limit only
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _too_large(request.content_length)
        try:
            async with asyncio.timeout(body_timeout):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            release_memory()  # up to MAX_BODY was buffered before the size was known
            return _too_large(None)
        except TimeoutError:
            return web.json_response({"error": f"request body not received within {body_timeout:g}s"}, status=408)
        try:
            status, payload = await answer(raw, resolver, config)
            return web.json_response(payload, status=status)
        finally:
            if len(raw) >= TRIM_AFTER:
                del raw
                release_memory()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[reload_certs], client_max_size=MAX_BODY)
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
    header_timeout: float = HEADER_TIMEOUT,
    handshake_timeout: float | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. A connection that has not finished its TLS handshake within ``handshake_timeout``
    (default: ``header_timeout``, at most 10 s), or its request line and headers within ``header_timeout`` (also: an
    idle kept-alive connection), is closed; a body not received within ``header_timeout`` is answered 408."""
    if handshake_timeout is None:
        handshake_timeout = min(HANDSHAKE_TIMEOUT, header_timeout)
    certs = CertReloader(cert, key)
    app = make_app(resolver, config, certs, body_timeout=header_timeout)
    # aiohttp arms keepalive_timeout when a connection is made and closes it if no complete request head arrived
    runner = web.AppRunner(app, keepalive_timeout=header_timeout)
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        runner.server, host, port, ssl=certs.context, ssl_handshake_timeout=handshake_timeout, backlog=128
    )
    log.info("webhook listening on https://%s:%d/mutate", host, port)
    watcher = asyncio.create_task(certs.watch(reload_interval))
    stop = asyncio.Event()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        server.close()
        await runner.cleanup()
        await server.wait_closed()
