"""KEP-5304 DRA device metadata: the well-known file a DRA driver puts into a container, and the JSON in it.

Owns, for both sides, the one place of the format: where the file is (under
``/var/run/kubernetes.io/dra-device-attributes``: ``resourceclaims/<claim>/<request>/<driver>-metadata.json`` for a
claim the pod names directly, ``resourceclaimtemplates/<pod claim name>/<request>/...`` for one made from a template),
the ``metadata.resource.k8s.io/v1alpha1`` ``DeviceMetadata`` object (a stream of one or more JSON objects, newest API
version first, consumers take the first they know), and the attributes vhostplug publishes for a vhost-user device:
``vhost-user-path`` (the socket's path in the container), ``mtu`` (both read by KubeVirt's vhost-user binding) and
``vhost-user-mode`` (device-info's mode: QEMU's role, ``server`` when omitted). The DRA driver encodes; the KubeVirt
sidecar decodes. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTAINER_ROOT = "/var/run/kubernetes.io/dra-device-attributes"
#: vhostplug's DRA driver (a domain the project owns); its devices' attributes live under this name
VHOSTPLUG_DRIVER = "vhostuser.vhostplug.io"
API_VERSION = "metadata.resource.k8s.io/v1alpha1"
KIND = "DeviceMetadata"
CLAIMS_DIR = "resourceclaims"
TEMPLATES_DIR = "resourceclaimtemplates"

ATTR_VHOST_USER_PATH = "vhost-user-path"
ATTR_MTU = "mtu"
ATTR_VHOST_USER_MODE = "vhost-user-mode"
#: RFC 791's minimum and OVS-DPDK's maximum MTU (the bounds KubeVirt's binding checks too)
MIN_MTU = 68
MAX_MTU = 9702
#: the typed value keys of a DeviceAttribute
_VALUE_KEYS = ("string", "int", "bool", "version")


class MetadataError(Exception):
    """A metadata file that is there but unusable; the message names the file's claim/request and what is wrong."""


def relative_path(driver: str, claim_name: str, request_name: str, *, from_template: bool) -> str:
    """The file's path below :data:`CONTAINER_ROOT` (only the top-level request name of ``request/subrequest``)."""
    request = request_name.split("/")[0]
    for what, part in (("driver", driver), ("claim name", claim_name), ("request name", request)):
        if not part or "/" in part or part in (".", ".."):
            raise MetadataError(f"{what} {part!r} cannot name a device metadata file")
    top = TEMPLATES_DIR if from_template else CLAIMS_DIR
    return f"{top}/{claim_name}/{request}/{driver}-metadata.json"


def attribute(value: str | int | bool) -> dict[str, Any]:
    """A DeviceAttribute: ``{"string": ...}``, ``{"int": ...}`` or ``{"bool": ...}``."""
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    return {"string": value}


def attribute_value(attr: Any) -> str | int | bool | None:
    """The one typed value of a DeviceAttribute, or None when it is not one."""
    if not isinstance(attr, Mapping):
        return None
    values = [attr[k] for k in _VALUE_KEYS if k in attr]
    if len(values) != 1 or not isinstance(values[0], str | int | bool):
        return None
    v: str | int | bool = values[0]
    return v


@dataclass(frozen=True)
class Device:
    driver: str
    pool: str
    name: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metadata:
    """One ``DeviceMetadata`` object: the claim it describes and its devices by request name."""

    namespace: str
    name: str
    uid: str
    generation: int
    pod_claim_name: str | None
    requests: Mapping[str, Sequence[Device]]


def encode(meta: Metadata) -> str:
    """The file's content: one ``metadata.resource.k8s.io/v1alpha1`` object (the only version there is)."""
    obj: dict[str, Any] = {
        "kind": KIND,
        "apiVersion": API_VERSION,
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid, "generation": meta.generation},
    }
    if meta.pod_claim_name:
        obj["podClaimName"] = meta.pod_claim_name
    obj["requests"] = [
        {
            "name": request,
            "devices": [
                {"driver": d.driver, "pool": d.pool, "name": d.name, "attributes": dict(d.attributes)} for d in devices
            ],
        }
        for request, devices in meta.requests.items()
    ]
    return json.dumps(obj, indent=2) + "\n"


def _objects(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)


def decode(text: str, source: str = "device metadata") -> Metadata | None:
    """The first object of a version we know, from the file's content; None for an empty file (metadata a driver
    has not written yet). :class:`MetadataError` when the content is not a metadata stream or holds no known
    version."""
    if not text.strip():
        return None
    try:
        objects = _objects(text)
    except ValueError as exc:
        raise MetadataError(f"{source} is not a stream of JSON objects: {exc}") from None
    for obj in objects:
        if not isinstance(obj, Mapping) or obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
            continue
        meta = obj.get("metadata") or {}
        requests: dict[str, list[Device]] = {}
        for req in obj.get("requests") or []:
            if not isinstance(req, Mapping) or not isinstance(req.get("name"), str):
                raise MetadataError(f"{source}: a request without a name: {req!r}")
            devices = requests.setdefault(req["name"], [])
            for dev in req.get("devices") or []:
                if not isinstance(dev, Mapping) or not all(isinstance(dev.get(k), str) for k in ("driver", "name")):
                    raise MetadataError(f"{source}: request {req['name']}: a device without driver or name")
                attrs = dev.get("attributes") or {}
                if not isinstance(attrs, Mapping):
                    raise MetadataError(f"{source}: device {dev['name']}: attributes must be an object")
                devices.append(Device(dev["driver"], str(dev.get("pool", "")), dev["name"], attrs))
        generation = meta.get("generation", 0) if isinstance(meta, Mapping) else 0
        return Metadata(
            namespace=str(meta.get("namespace", "")) if isinstance(meta, Mapping) else "",
            name=str(meta.get("name", "")) if isinstance(meta, Mapping) else "",
            uid=str(meta.get("uid", "")) if isinstance(meta, Mapping) else "",
            generation=generation if isinstance(generation, int) else 0,
            pod_claim_name=obj.get("podClaimName") if isinstance(obj.get("podClaimName"), str) else None,
            requests=requests,
        )
    raise MetadataError(f"{source} holds no {KIND} of {API_VERSION}")


@dataclass(frozen=True)
class VhostUser:
    """What a VM or app needs of one vhost-user device: its socket in the container, the MTU, QEMU's role."""

    path: str
    mtu: int
    mode: str = "server"


def vhost_user_attributes(path: str, mtu: int, mode: str = "server") -> dict[str, dict[str, Any]]:
    """The attributes a vhost-user device carries in its metadata (the driver's side of :func:`vhost_user`)."""
    return {
        ATTR_VHOST_USER_PATH: attribute(path),
        ATTR_MTU: attribute(mtu),
        ATTR_VHOST_USER_MODE: attribute(mode),
    }


def vhost_user(meta: Metadata, request: str, driver: str, source: str = "device metadata") -> VhostUser:
    """The vhost-user device of ``driver`` in ``request`` (top-level name; ``request/sub`` entries count too)."""
    top = request.split("/")[0]
    found = [
        d
        for name, devices in meta.requests.items()
        if name.split("/")[0] == top
        for d in devices
        if d.driver == driver and ATTR_VHOST_USER_PATH in d.attributes
    ]
    if not found:
        raise MetadataError(f"{source}: request {request} has no device of {driver} with {ATTR_VHOST_USER_PATH}")
    if len(found) > 1:
        raise MetadataError(
            f"{source}: request {request} has {len(found)} vhost-user devices of {driver}; one interface takes one"
        )
    attrs = found[0].attributes
    path = attribute_value(attrs.get(ATTR_VHOST_USER_PATH))
    if not isinstance(path, str) or not path.startswith("/"):
        raise MetadataError(f"{source}: {ATTR_VHOST_USER_PATH} must be an absolute path string, not {path!r}")
    if ATTR_MTU not in attrs:
        raise MetadataError(f"{source}: device {found[0].name} has no {ATTR_MTU} attribute")
    mtu = attribute_value(attrs.get(ATTR_MTU))
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
        raise MetadataError(f"{source}: {ATTR_MTU} must be an int from {MIN_MTU} to {MAX_MTU}, not {mtu!r}")
    mode = attribute_value(attrs.get(ATTR_VHOST_USER_MODE)) if ATTR_VHOST_USER_MODE in attrs else "server"
    if mode not in ("server", "client"):
        raise MetadataError(f"{source}: {ATTR_VHOST_USER_MODE} must be 'server' or 'client', not {mode!r}")
    return VhostUser(path=path, mtu=mtu, mode=str(mode))
