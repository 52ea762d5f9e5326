"""The object store behind the stand-in kube-apiserver: objects as JSON, kept with the metadata and write rules of
kube-apiserver, and a numbered event history that WATCH replays from.

What it keeps like kube-apiserver: ``metadata.uid``, ``resourceVersion`` (one counter for every write),
``generation`` (1 on create, bumped when anything outside ``metadata`` and ``status`` changes) and
``creationTimestamp`` are the server's; ``generateName``; create answers 409 AlreadyExists; an update that names a
stale ``resourceVersion`` answers 409 Conflict; for resources with a ``status`` subresource, writes to the object keep
its status, writes to ``/status`` change only the status (for pods also labels and annotations, as kube-apiserver's
pod status strategy allows), and create drops the status; a field selector names only
the fields the resource supports (for the resources it knows); errors are :class:`ApiError` carrying the ``Status``
object kube-apiserver answers. What it does not do: namespaces need not exist, deletion is immediate (finalizers are
kept as data only), no admission, no defaulting, no schema checks.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vhostplug.lab import apiselect

JSON = dict[str, Any]
#: The events WATCH can replay; an older resourceVersion answers 410 Gone, as after etcd compaction.
HISTORY = 10000
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Resource:
    """One served resource: its group (``""`` is the core group), version, plural, kind and scope."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = True
    #: Field selector paths beyond metadata.name/metadata.namespace; None: any path (a resource it does not know).
    fields: frozenset[str] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def at(self, version: str) -> Resource:
        return Resource(self.group, version, self.plural, self.kind, self.namespaced, self.status, self.fields)


def _r(group: str, version: str, plural: str, kind: str, ns: bool, status: bool = True, *fields: str) -> Resource:
    return Resource(group, version, plural, kind, ns, status, frozenset(fields))


#: What it knows by (group, plural); others are served too, with the kind taken from the objects written.
KNOWN: dict[tuple[str, str], Resource] = {
    (r.group, r.plural): r
    for r in (
        _r("", "v1", "namespaces", "Namespace", False, True, "status.phase"),
        _r("", "v1", "nodes", "Node", False, True, "spec.unschedulable"),
        _r("", "v1", "pods", "Pod", True, True, "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
           "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
        _r("", "v1", "events", "Event", True, False, "involvedObject.kind", "involvedObject.namespace",
           "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
           "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
        _r("", "v1", "configmaps", "ConfigMap", True, False),
        _r("", "v1", "secrets", "Secret", True, False, "type"),
        _r("", "v1", "serviceaccounts", "ServiceAccount", True, False),
        _r("events.k8s.io", "v1", "events", "Event", True, False),
        _r("k8s.cni.cncf.io", "v1", "network-attachment-definitions", "NetworkAttachmentDefinition", True, False),
        _r("resource.k8s.io", "v1", "resourceslices", "ResourceSlice", False, False, "spec.nodeName", "spec.driver"),
        _r("resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", True, True),
        _r("resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate", True, False),
        _r("resource.k8s.io", "v1", "deviceclasses", "DeviceClass", False, False),
        _r("kubevirt.io", "v1", "virtualmachineinstances", "VirtualMachineInstance", True, True),
    )
}  # fmt: skip


class ApiError(Exception):
    """A request kube-apiserver refuses; :attr:`status` is the ``Status`` object it answers with."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    @property
    def status(self) -> JSON:
        out: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        out |= {"message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            out["details"] = self.details
        return out


def _details(res: Resource, name: str) -> JSON:
    return {"name": name, "group": res.group, "kind": res.plural}


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.plural}{"." + res.group if res.group else ""} "{name}" not found',
                    _details(res, name))  # fmt: skip


@dataclass(frozen=True)
class Event:
    """One write, as WATCH reports it."""

    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    group: str
    plural: str
    namespace: str
    obj: JSON


Key = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise ApiError(400, "BadRequest", "metadata must be an object")
    return meta


def _without_rv(obj: JSON) -> JSON:
    return obj | {"metadata": {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}}


def _spec_of(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


@dataclass
class Store:
    """Objects by (group, plural, namespace, name); thread-safe; :attr:`changed` is notified on every write."""

    objects: dict[Key, JSON] = field(default_factory=dict)
    rv: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    history: deque[Event] = field(default_factory=lambda: deque(maxlen=HISTORY))
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    # -- resources -------------------------------------------------------------------------------------------------

    def resource(self, group: str, version: str, plural: str, namespaced: bool) -> Resource:
        """The resource a path names (one it knows, or one it learns the kind of from the objects written)."""
        known = KNOWN.get((group, plural))
        if known is not None:
            return known.at(version)
        kind = self.kinds.get((group, plural)) or plural[:1].upper() + plural[1:].removesuffix("s")
        return Resource(group, version, plural, kind, namespaced, True, None)

    # -- writes ----------------------------------------------------------------------------------------------------

    def _emit(self, kind: str, res: Resource, ns: str, obj: JSON) -> None:
        event = Event(kind, self.rv, res.group, res.plural, ns, copy.deepcopy(obj))
        self.history.append(event)
        for listener in list(self.listeners):
            listener(event)
        self.changed.notify_all()

    def _stamp(self, obj: JSON) -> None:
        self.rv += 1
        _meta(obj)["resourceVersion"] = str(self.rv)

    def create(self, res: Resource, ns: str, obj: JSON, *, keep_status: bool = False) -> JSON:
        """POST: a new object; 409 if the name is taken. ``keep_status`` is for seeding (status kept as given)."""
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body is not a JSON object")
        obj = copy.deepcopy(obj)
        self._check_type(res, obj)
        meta = _meta(obj)
        if meta.get("resourceVersion") and not keep_status:
            raise ApiError(400, "BadRequest", "resourceVersion should not be set on objects to be created")
        body_ns = meta.get("namespace")
        if res.namespaced and body_ns not in (None, "", ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")  # fmt: skip
        with self.lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)[:5]}"
            name = self._check_name(res, meta.get("name"))
            key = (res.group, res.plural, ns if res.namespaced else "", name)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists",
                               f'{res.plural}{"." + res.group if res.group else ""} "{name}" already exists',
                               _details(res, name))  # fmt: skip
            if res.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            meta |= {"uid": str(uuid.uuid4()), "creationTimestamp": _now(), "generation": 1}
            for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(server_owned, None)
            if res.status and not keep_status:
                obj.pop("status", None)
            obj.setdefault("apiVersion", res.api_version)
            obj.setdefault("kind", res.kind)
            self.kinds[(res.group, res.plural)] = obj["kind"]
            self._stamp(obj)
            self.objects[key] = obj
            self._emit("ADDED", res, key[2], obj)
            return copy.deepcopy(obj)

    def _check_type(self, res: Resource, obj: JSON) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        known = KNOWN.get((res.group, res.plural))
        if known is not None and kind not in (None, known.kind):
            raise ApiError(400, "BadRequest", f"the kind {kind!r} does not match the resource {res.plural!r}")
        if api_version is not None and api_version.rsplit("/", 1)[0] != (res.group or api_version):
            raise ApiError(400, "BadRequest", f"the apiVersion {api_version!r} does not match the group {res.group!r}")

    @staticmethod
    def _check_name(res: Resource, name: Any) -> str:
        if not name:
            raise ApiError(422, "Invalid", f"{res.kind} is invalid: metadata.name: Required value: name or generateName is required")  # fmt: skip
        if not isinstance(name, str) or len(name) > 253 or not _SUBDOMAIN.match(name):
            raise ApiError(422, "Invalid",
                           f"{res.kind} {name!r} is invalid: metadata.name: Invalid value: {name!r}: a lowercase "
                           "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                           _details(res, str(name)))  # fmt: skip
        return name

    def _current(self, res: Resource, ns: str, name: str) -> tuple[Key, JSON]:
        key = (res.group, res.plural, ns if res.namespaced else "", name)
        obj = self.objects.get(key)
        if obj is None:
            raise not_found(res, name)
        return key, obj

    def update(self, res: Resource, ns: str, name: str, obj: JSON, *, subresource: str = "") -> JSON:
        """PUT: replace the object (or only its status for ``subresource="status"``); 409 on a stale
        ``resourceVersion``, 404 if it does not exist."""
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body is not a JSON object")
        self._check_type(res, obj)
        meta = _meta(copy.deepcopy(obj))
        if meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if res.namespaced and meta.get("namespace") not in (None, "", ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")  # fmt: skip
        with self.lock:
            key, old = self._current(res, ns, name)
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv not in (None, "") and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               f'Operation cannot be fulfilled on {res.plural}{"." + res.group if res.group else ""} '
                               f'"{name}": the object has been modified; please apply your changes to the latest '
                               "version and try again", _details(res, name))  # fmt: skip
            return self._write(res, key, old, copy.deepcopy(obj), subresource)

    def _write(self, res: Resource, key: Key, old: JSON, new: JSON, subresource: str) -> JSON:
        if subresource == "status":
            out = copy.deepcopy(old)
            if "status" in new:
                out["status"] = new["status"]
            else:
                out.pop("status", None)
            if (res.group, res.plural) == ("", "pods"):  # pods/status also takes labels and annotations (as
                for k in ("labels", "annotations"):  # kube-apiserver's pod status strategy; Multus relies on it)
                    if k in _meta(new):
                        _meta(out)[k] = copy.deepcopy(_meta(new)[k])
                    else:
                        _meta(out).pop(k, None)
        elif subresource:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({subresource})")
        else:
            out = new
            meta = _meta(out)
            for owned in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if owned in old["metadata"]:
                    meta[owned] = old["metadata"][owned]
                else:
                    meta.pop(owned, None)
            meta["name"] = key[3]
            meta.pop("generateName", None)
            if res.namespaced:
                meta["namespace"] = key[2]
            if res.status:
                if "status" in old:
                    out["status"] = old["status"]
                else:
                    out.pop("status", None)
            out["apiVersion"], out["kind"] = old["apiVersion"], old["kind"]
            if _spec_of(out) != _spec_of(old):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if _without_rv(out) == _without_rv(old):
            return copy.deepcopy(old)  # a no-op write keeps the resourceVersion, as kube-apiserver does
        self._stamp(out)
        self.objects[key] = out
        self._emit("MODIFIED", res, key[2], out)
        return copy.deepcopy(out)

    def patch(self, res: Resource, ns: str, name: str, apply: Callable[[JSON], JSON], *, subresource: str = "") -> JSON:
        """PATCH: ``apply`` maps the current object to the patched one; a ``resourceVersion`` the patch sets must be
        the current one (409 otherwise)."""
        with self.lock:
            key, old = self._current(res, ns, name)
            new = apply(copy.deepcopy(old))
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "the patched object is not a JSON object")
            meta = _meta(new)
            if meta.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been modified; please apply your changes to the latest version and try again', _details(res, name))  # fmt: skip
            if meta.get("name") != name:
                raise ApiError(400, "BadRequest", "a patch cannot change metadata.name")
            return self._write(res, key, old, new, subresource)

    def delete(self, res: Resource, ns: str, name: str, preconditions: JSON | None = None) -> JSON:
        """DELETE: remove the object now; preconditions (uid, resourceVersion) must hold (409 otherwise)."""
        with self.lock:
            key, old = self._current(res, ns, name)
            for field_name in ("uid", "resourceVersion"):
                wanted = (preconditions or {}).get(field_name)
                if wanted is not None and wanted != old["metadata"].get(field_name):
                    raise ApiError(409, "Conflict", f"Precondition failed: {field_name}: {wanted}, object {field_name}: {old['metadata'].get(field_name)}", _details(res, name))  # fmt: skip
            del self.objects[key]
            gone = copy.deepcopy(old)
            self._stamp(gone)
            self._emit("DELETED", res, key[2], gone)
            return gone

    # -- reads -----------------------------------------------------------------------------------------------------

    def get(self, res: Resource, ns: str, name: str) -> JSON:
        with self.lock:
            return copy.deepcopy(self._current(res, ns, name)[1])

    def matcher(self, res: Resource, labels: str = "", fields: str = "") -> Callable[[JSON], bool]:
        """A predicate for LIST/WATCH selectors; 400 for one that does not parse or names an unsupported field."""
        try:
            by_label = apiselect.label_selector(labels)
            by_field = apiselect.field_selector(fields)
            for path in apiselect.field_paths(fields):
                if res.fields is not None and path not in res.fields | {"metadata.name", "metadata.namespace"}:
                    raise apiselect.SelectorError(f'field label not supported: {path}')  # fmt: skip
        except apiselect.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        return lambda obj: by_label(obj) and by_field(obj)

    def select(self, res: Resource, ns: str | None, match: Callable[[JSON], bool]) -> tuple[int, list[JSON]]:
        """The current resourceVersion and the matching objects (``ns`` None: every namespace), sorted by key."""
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for key, obj in sorted(self.objects.items())
                if key[:2] == (res.group, res.plural) and (ns is None or key[2] == ns) and match(obj)
            ]
            return self.rv, items

    def since(self, rv: int) -> list[Event] | None:
        """The events after ``rv``; None when ``rv`` is older than the history kept (WATCH answers 410 Gone)."""
        with self.lock:
            if self.history and self.history[0].rv > rv + 1:
                return None
            return [e for e in self.history if e.rv > rv]
