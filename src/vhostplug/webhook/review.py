"""One AdmissionReview v1: decoded, checked, and answered with the pod's JSONPatch or a denial saying why.

Owns: the body's decoding (bounded depth), the type checks of the pod fields the webhook reads, counting the devices a
pod's networks need (each distinct network resolved once), and the answer: 200 with an AdmissionReview whenever the
body carries a uid, else 400 with ``{"error": ...}``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from typing import Any

from vhostplug.cni.wire import depth as json_depth
from vhostplug.webhook.config import WebhookConfig
from vhostplug.webhook.networks import (
    NETWORKS_ANNOTATION,
    Network,
    ReviewError,
    check_namespace,
    parse_networks,
    short,
)
from vhostplug.webhook.patch import build_patch
from vhostplug.webhook.resolver import NadResolver, ResolveError

log = logging.getLogger("vhostplug.webhook")

#: deeper JSON is refused (a pod nests about 12 levels; Python's decoder recurses)
MAX_DEPTH = 64


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
            _expect(v, str, f"metadata.{key}[{short(k, 40)}]")
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
            uid, warnings=[f"vhostplug webhook: only Pods are mutated, not {short(kind)}; admitted unchanged"]
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
