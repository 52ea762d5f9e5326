"""Kubernetes protobuf request bodies for the lab's stand-in kube-apiserver (:mod:`vhostplug.lab.apiserver`).

client-go clients configured for protobuf (Multus: ``ContentType: application/vnd.kubernetes.protobuf``) write pods'
status (``PUT pods/<pod>/status``: the ``k8s.v1.cni.cncf.io/network-status`` annotation) and events (``POST events``)
in it. A body is the magic ``k8s\\0`` and a ``runtime.Unknown`` envelope whose ``raw`` holds the object's message;
:func:`decode` turns one into the JSON object the store keeps, reading only what vhostplug's own minimal .proto
(``proto/vhostplug/lab/k8swire/k8s.proto``) names: a Pod's metadata (the spec and status are not decoded; a status
write keeps the stored status), an Event's metadata, involved object, reason, message, type, source and count.
:func:`install` registers it with a server; other kinds answer 415 naming what is decoded.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError

from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.apistore import JSON, ApiError, Resource
from vhostplug.lab.k8swire import k8s_pb2 as pb

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
DECODED_KINDS = ("Pod", "Event")


def envelope(body: bytes) -> pb.Unknown:
    """The ``runtime.Unknown`` after the magic; ApiError 400 when it is not one."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "the protobuf body does not start with the Kubernetes magic k8s\\0")
    unknown = pb.Unknown()
    try:
        unknown.ParseFromString(body[len(MAGIC) :])
    except DecodeError as exc:
        raise ApiError(400, "BadRequest", f"the protobuf body is not a runtime.Unknown: {exc}") from None
    if unknown.contentEncoding:
        raise ApiError(415, "UnsupportedMediaType", f"content encoding {unknown.contentEncoding!r} is not supported")
    return unknown


def _meta(m: pb.ObjectMeta) -> JSON:
    out: JSON = {}
    for key in ("name", "generateName", "namespace", "uid", "resourceVersion"):
        if m.HasField(key):
            out[key] = getattr(m, key)
    if m.labels:
        out["labels"] = dict(m.labels)
    if m.annotations:
        out["annotations"] = dict(m.annotations)
    return out


def _fields(msg: Any, names: tuple[str, ...]) -> JSON:
    return {n: getattr(msg, n) for n in names if msg.HasField(n)}


def _pod(raw: bytes) -> JSON:
    pod = pb.Pod()
    pod.ParseFromString(raw)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(pod.metadata)}


def _event(raw: bytes) -> JSON:
    ev = pb.Event()
    ev.ParseFromString(raw)
    out: JSON = {"apiVersion": "v1", "kind": "Event", "metadata": _meta(ev.metadata)}
    if ev.HasField("involvedObject"):
        ref = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
        out["involvedObject"] = _fields(ev.involvedObject, ref)
    if ev.HasField("source"):
        out["source"] = _fields(ev.source, ("component", "host"))
    out.update(_fields(ev, ("reason", "message", "count", "type", "action", "reportingComponent", "reportingInstance")))
    return out


def decode(body: bytes) -> JSON:
    """A Kubernetes protobuf body as the JSON object (Pod: metadata only; Event: see the module docstring)."""
    unknown = envelope(body)
    kind = unknown.typeMeta.kind
    try:
        if kind == "Pod":
            out = _pod(unknown.raw)
        elif kind == "Event":
            out = _event(unknown.raw)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the lab decodes {CONTENT_TYPE} only for {', '.join(DECODED_KINDS)}, not {kind or 'an empty kind'}",
            )
    except DecodeError as exc:
        raise ApiError(400, "BadRequest", f"the protobuf {kind} does not decode: {exc}") from None
    if unknown.typeMeta.apiVersion:
        out["apiVersion"] = unknown.typeMeta.apiVersion
    return out


def install(server: ApiServer) -> ApiServer:
    """Accept Kubernetes protobuf bodies on ``server``. A pods/status write keeps the stored pod's status (PodStatus
    is not decoded: Multus changes only the annotations)."""

    def decoder(res: Resource, sub: str, body: bytes) -> JSON:
        obj = decode(body)
        if obj["kind"] != res.kind:
            raise ApiError(400, "BadRequest", f"a {obj['kind']} body sent to {res.plural}")
        if sub == "status" and obj["kind"] == "Pod":
            meta = obj["metadata"]
            stored = server.store.get(res, meta.get("namespace", ""), meta.get("name", ""))
            if "status" in stored:
                obj["status"] = stored["status"]
        return obj

    server.register_decoder(CONTENT_TYPE, decoder)
    return server
