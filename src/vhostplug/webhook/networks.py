"""The Multus networks annotation of a pod: parsed into ``(namespace, name)`` pairs, every name checked.

Owns: :data:`NETWORKS_ANNOTATION`, :class:`Network`, the DNS-1123 checks of namespaces and NAD names, and
:class:`ReviewError` (malformed input the review answers with a 400 denial). Nothing here talks to the API: names are
checked before anything is looked up.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
#: networks one pod may name (each unknown one costs an API request)
MAX_NETWORKS = 64

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class ReviewError(ValueError):
    """The AdmissionReview or its pod is malformed."""


@dataclass(frozen=True)
class Network:
    namespace: str
    name: str


def short(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages that quote tenant input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
                raise ReviewError(f"{where}: every entry needs a name, got {short(item)}")
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
            raise ReviewError(f"{NETWORKS_ANNOTATION}: {short(ref)} is not of the form [namespace/]name[@interface]")
        ns = check_namespace(pieces[0], NETWORKS_ANNOTATION) if len(pieces) == 2 else default_namespace
        out.append(Network(ns, check_network_name(pieces[-1], NETWORKS_ANNOTATION)))
    return out
