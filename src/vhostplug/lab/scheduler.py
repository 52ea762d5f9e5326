"""A stand-in for kube-scheduler's DRA allocator, for the lab: it allocates devices to a ResourceClaim from the
published ResourceSlices by evaluating the DeviceClass and claim CEL selectors with a real CEL library
(:mod:`vhostplug.lab.dracel`), and writes ``status.allocation`` as kube-scheduler does.

What it allocates like kube-scheduler (``resource.k8s.io/v1``): ``exactly`` requests (``ExactCount`` with ``count``,
or ``All``) and ``firstAvailable`` subrequests (result request ``<request>/<subrequest>``); ``matchAttribute``
constraints; devices of node-local slices (``spec.nodeName``) only, all of one node (the one given, else the first
that fits, by name); only complete pools at their newest generation; no device already in another claim's
allocation; ``results`` with driver, pool, device and request; ``config`` from the classes (``FromClass``) then from
the claim (``FromClaim``); a ``nodeSelector`` for the node; ``reservedFor`` the pod when one is named. An allocated
claim is answered as it is. What it does not do: admin access, tolerations and taints, partitionable devices,
network-attached slices, capacity sharing, scoring (the first fit wins).

:func:`allocate` is the pure allocator; :class:`Scheduler` reads the objects from an API server through lightkube
(real HTTP) and writes the claim's status.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vhostplug.lab.dracel import CelError, matches

JSON = dict[str, Any]
#: placements tried per claim before giving up (backtracking over constraints)
MAX_STEPS = 100_000


class AllocationError(Exception):
    """The claim cannot be allocated; the message says which request and why."""


@dataclass(frozen=True)
class Candidate:
    driver: str
    pool: str
    node: str
    device: JSON

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.driver, self.pool, str(self.device["name"]))


@dataclass(frozen=True)
class _Need:
    request: str  # the result's request name (request/subrequest for firstAvailable)
    top: str  # the claim's request name (what constraints and config name)
    cls: str
    selectors: tuple[str, ...]
    count: int | None  # None: All


def usable_devices(slices: Sequence[JSON]) -> list[Candidate]:
    """The devices of complete pools at their newest generation, in node-local slices."""
    pools: dict[tuple[str, str], list[JSON]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if not spec.get("nodeName"):
            continue
        pools.setdefault((spec["driver"], spec["pool"]["name"]), []).append(s)
    out: list[Candidate] = []
    for (driver, pool), members in sorted(pools.items()):
        newest = max(int(m["spec"]["pool"]["generation"]) for m in members)
        current = [m for m in members if int(m["spec"]["pool"]["generation"]) == newest]
        if len(current) != int(current[0]["spec"]["pool"].get("resourceSliceCount", 1)):
            continue  # incomplete: the driver is still writing it
        for m in sorted(current, key=lambda m: m["metadata"]["name"]):
            out += [Candidate(driver, pool, m["spec"]["nodeName"], d) for d in m["spec"].get("devices") or []]
    return out


def in_use(claims: Sequence[JSON], but: str | None = None) -> set[tuple[str, str, str]]:
    """(driver, pool, device) of every allocated claim (except the one of UID ``but``)."""
    out = set()
    for c in claims:
        if but is not None and c["metadata"].get("uid") == but:
            continue
        results = ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results") or []
        out |= {(r["driver"], r["pool"], r["device"]) for r in results}
    return out


def _needs(claim: JSON) -> list[list[_Need]]:
    """Per claim request, its alternatives in order (one for ``exactly``, the subrequests for ``firstAvailable``)."""
    out = []
    for req in (claim.get("spec") or {}).get("devices", {}).get("requests") or []:
        name = req["name"]
        if "exactly" in req:
            alts = [(name, req["exactly"])]
        elif req.get("firstAvailable"):
            alts = [(f"{name}/{sub['name']}", sub) for sub in req["firstAvailable"]]
        else:
            raise AllocationError(f"request {name!r} has neither exactly nor firstAvailable")
        needs = []
        for result_name, spec in alts:
            mode = spec.get("allocationMode", "ExactCount")
            if mode not in ("ExactCount", "All"):
                raise AllocationError(f"request {result_name!r}: unknown allocationMode {mode!r}")
            count = None if mode == "All" else int(spec.get("count", 1))
            selectors = tuple(s["cel"]["expression"] for s in spec.get("selectors") or [] if "cel" in s)
            needs.append(_Need(result_name, name, spec["deviceClassName"], selectors, count))
        out.append(needs)
    return out


def _attribute(c: Candidate, name: str) -> Any:
    domain, _, ident = name.rpartition("/")
    for key, value in (c.device.get("attributes") or {}).items():
        kdomain, _, kident = key.rpartition("/")
        if kident == ident and (kdomain or c.driver) == domain:
            return next(iter(value.values()), None)
    return None


class _Search:
    def __init__(self, claim: JSON, classes: dict[str, JSON], candidates: list[Candidate]) -> None:
        self.claim, self.classes, self.candidates = claim, classes, candidates
        self.constraints = [
            (set(c.get("requests") or []), c["matchAttribute"])
            for c in (claim.get("spec") or {}).get("devices", {}).get("constraints") or []
            if c.get("matchAttribute")
        ]
        self.steps = 0

    def fits(self, need: _Need) -> list[Candidate]:
        cls = self.classes.get(need.cls)
        if cls is None:
            raise AllocationError(f"request {need.request!r}: DeviceClass {need.cls!r} does not exist")
        exprs = [s["cel"]["expression"] for s in cls.get("spec", {}).get("selectors") or [] if "cel" in s]
        exprs += need.selectors
        try:
            return [c for c in self.candidates if all(matches(e, c.driver, c.device) for e in exprs)]
        except CelError as exc:
            raise AllocationError(f"request {need.request!r}: {exc}") from None

    def consistent(self, chosen: list[tuple[_Need, Candidate]]) -> bool:
        for requests, attr in self.constraints:
            values = [_attribute(c, attr) for n, c in chosen if not requests or n.top in requests]
            if any(v is None for v in values) or len({repr(v) for v in values}) > 1:
                return False  # a device without the attribute fails the constraint, as in Kubernetes
        return True

    def solve(self, needs: list[list[_Need]], chosen: list[tuple[_Need, Candidate]]) -> Iterator[list[tuple[_Need, Candidate]]]:  # fmt: skip
        if not needs:
            yield chosen
            return
        taken = {c.key for _, c in chosen}
        for need in needs[0]:
            pool = [c for c in self.fits(need) if c.key not in taken]
            count = len(pool) if need.count is None else need.count
            if need.count is None and not pool:
                continue
            yield from self._pick(need, pool, count, 0, needs[1:], chosen)

    def _pick(self, need: _Need, pool: list[Candidate], count: int, start: int, rest: list[list[_Need]], chosen: list[tuple[_Need, Candidate]]) -> Iterator[list[tuple[_Need, Candidate]]]:  # fmt: skip
        if count == 0:
            yield from self.solve(rest, chosen)
            return
        for i in range(start, len(pool)):
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise AllocationError(f"gave up after {MAX_STEPS} placements")
            trial = [*chosen, (need, pool[i])]
            if self.consistent(trial):
                yield from self._pick(need, pool, count - 1, i + 1, rest, trial)


def allocate(claim: JSON, slices: Sequence[JSON], classes: dict[str, JSON], taken: set[tuple[str, str, str]],
             node: str | None = None) -> JSON:  # fmt: skip
    """The ``status.allocation`` for ``claim`` from ``slices`` (devices in ``taken`` excluded), on ``node`` or the
    first node that fits; AllocationError when none does."""
    needs = _needs(claim)
    usable = [c for c in usable_devices(slices) if c.key not in taken]
    nodes = [node] if node is not None else sorted({c.node for c in usable})
    for n in nodes:
        search = _Search(claim, classes, [c for c in usable if c.node == n])
        found = next(search.solve(needs, []), None)
        if found is not None:
            return _allocation(claim, classes, found, n)
    where = f"node {node}" if node is not None else f"{len(nodes)} node(s)"
    names = ", ".join(repr(alts[0].top) for alts in needs)
    raise AllocationError(f"cannot allocate request(s) {names} on {where}: not enough matching free devices")


def _allocation(claim: JSON, classes: dict[str, JSON], chosen: list[tuple[_Need, Candidate]], node: str) -> JSON:
    results = [{"request": n.request, "driver": c.driver, "pool": c.pool, "device": c.device["name"]} for n, c in chosen]  # fmt: skip
    config: list[JSON] = []
    used_classes: dict[str, list[str]] = {}
    for n, _ in chosen:
        used_classes.setdefault(n.cls, [])
        if n.request not in used_classes[n.cls]:
            used_classes[n.cls].append(n.request)
    for cls_name, requests in used_classes.items():
        for entry in classes[cls_name].get("spec", {}).get("config") or []:
            if "opaque" in entry:
                config.append({"source": "FromClass", "requests": requests, "opaque": copy.deepcopy(entry["opaque"])})
    for entry in (claim.get("spec") or {}).get("devices", {}).get("config") or []:
        if "opaque" in entry:
            item: JSON = {"source": "FromClaim", "opaque": copy.deepcopy(entry["opaque"])}
            if entry.get("requests"):
                item["requests"] = list(entry["requests"])
            config.append(item)
    devices: JSON = {"results": results}
    if config:
        devices["config"] = config
    return {
        "devices": devices,
        "nodeSelector": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
        },
        "allocationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class Scheduler:
    """Allocates claims through an API server (lightkube, generic resources) and writes their status."""

    def __init__(self, client: Any) -> None:
        from lightkube.generic_resource import create_global_resource, create_namespaced_resource

        self.client = client
        self.claims = create_namespaced_resource("resource.k8s.io", "v1", "ResourceClaim", "resourceclaims")
        self.slices = create_global_resource("resource.k8s.io", "v1", "ResourceSlice", "resourceslices")
        self.classes = create_global_resource("resource.k8s.io", "v1", "DeviceClass", "deviceclasses")

    def schedule(self, namespace: str, name: str, node: str | None = None, pod: JSON | None = None) -> JSON:
        """Allocate the claim (unless it is) and reserve it for ``pod`` (``{"name", "uid"}``); the claim as written.
        A write that lost a race (409) is done again from a fresh read."""
        from lightkube import ApiError

        for _ in range(3):
            claim: JSON = self.client.get(self.claims, name, namespace=namespace).to_dict()
            status = claim.setdefault("status", {})
            changed = False
            if not status.get("allocation"):
                slices = [s.to_dict() for s in self.client.list(self.slices)]
                classes = {c.metadata.name: c.to_dict() for c in self.client.list(self.classes)}
                others = [c.to_dict() for c in self.client.list(self.claims, namespace="*")]
                taken = in_use(others, but=claim["metadata"]["uid"])
                status["allocation"] = allocate(claim, slices, classes, taken, node)
                changed = True
            if pod is not None:
                ref = {"resource": "pods", "name": pod["name"], "uid": pod["uid"]}
                reserved = status.setdefault("reservedFor", [])
                if ref not in reserved:
                    reserved.append(ref)
                    changed = True
            if not changed:
                return claim
            try:
                out: JSON = self.client.replace(self.claims.Status.from_dict(claim)).to_dict()
                return out
            except ApiError as exc:
                if exc.status.code != 409:
                    raise
        raise AllocationError(f"claim {namespace}/{name} kept changing while it was allocated")
