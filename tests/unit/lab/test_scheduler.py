"""The lab's stand-in DRA allocator through real HTTP (lightkube to the stand-in kube-apiserver): the shipped
DeviceClasses and the example claim's selectors evaluated by cel-python against slices built as the agent builds
them, status.allocation written as kube-scheduler writes it, devices never handed out twice, firstAvailable,
matchAttribute, stale pools ignored, clear refusals."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client, KubeConfig

from tests.conftest import REPO
from vhostplug.cni.policy import NodePolicy
from vhostplug.dra.sliceconfig import SlicesConfig
from vhostplug.dra.slices import node_devices, slice_specs
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.scheduler import AllocationError, Scheduler, allocate, usable_devices

DRIVER = "vhostuser.vhostplug.io"
DOCS = [d for f in sorted((REPO / "deploy" / "dra").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
(TEMPLATE,) = [d for d in DOCS if d["kind"] == "ResourceClaimTemplate"]
A = f'device.attributes["{DRIVER}"]'


def _slice(node: str, generation: int = 1, numa: dict[str, int] | None = None, name: str = "") -> dict[str, Any]:
    config = SlicesConfig.model_validate({"slotsPerBridge": 2, "bridges": {b: {"numaNode": n} for b, n in (numa or {}).items()}})  # fmt: skip
    (spec,) = slice_specs(node, DRIVER, node_devices(NodePolicy(bridges=("br-vhost", "br-fast")), config), generation)
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": name or f"{node}-{generation}"}, "spec": spec}  # fmt: skip


def _claim(name: str, requests: list[dict[str, Any]] | None = None, **devices: Any) -> dict[str, Any]:
    spec = copy.deepcopy(TEMPLATE["spec"]["spec"])
    if requests is not None:
        spec["devices"]["requests"] = requests
        spec["devices"]["config"] = []
    spec["devices"].update(devices)
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}  # fmt: skip


def _req(name: str, count: int = 1, *selectors: str, cls: str = "vhostuser.vhostplug.io") -> dict[str, Any]:
    return {"name": name, "exactly": {"deviceClassName": cls, "count": count, "selectors": [{"cel": {"expression": s}} for s in selectors]}}  # fmt: skip


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer() as server:
        for doc in DOCS:
            if doc["kind"] == "DeviceClass":
                server.put(doc)
        server.put(_slice("node-a", numa={"br-vhost": 0, "br-fast": 1}))
        server.put(_slice("node-b", numa={"br-vhost": 0, "br-fast": 0}))
        yield server


@pytest.fixture
def scheduler(api: ApiServer, tmp_path: Path) -> Scheduler:
    return Scheduler(Client(KubeConfig.from_file(api.kubeconfig(tmp_path / "kc")), field_manager="test"))


def _results(claim: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["request"], r["pool"], r["device"]) for r in claim["status"]["allocation"]["devices"]["results"]]


def test_the_example_claim_gets_a_server_mode_port_on_br_vhost(api: ApiServer, scheduler: Scheduler) -> None:
    api.put(_claim("c1"))
    out = scheduler.schedule("ns", "c1", pod={"name": "p1", "uid": "u1"})
    assert _results(out) == [("port", "node-a", "vhu-br-vhost-0")]
    alloc = out["status"]["allocation"]
    assert alloc["devices"]["results"][0]["driver"] == DRIVER
    assert alloc["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"] == [
        {"key": "metadata.name", "operator": "In", "values": ["node-a"]}
    ]
    (config,) = alloc["devices"]["config"]
    assert config["source"] == "FromClaim" and config["requests"] == ["port"]
    assert config["opaque"] == TEMPLATE["spec"]["spec"]["devices"]["config"][0]["opaque"]
    assert out["status"]["reservedFor"] == [{"resource": "pods", "name": "p1", "uid": "u1"}]
    stored = api.get("resource.k8s.io/v1", "ResourceClaim", "c1", "ns")
    assert stored is not None and stored["status"] == out["status"]
    # again: the same allocation, nothing written
    writes = len([r for r in api.requests if r.method == "PUT"])
    assert scheduler.schedule("ns", "c1") == out
    assert len([r for r in api.requests if r.method == "PUT"]) == writes
    # the next claim gets the next free device; the node can be named
    api.put(_claim("c2"))
    assert _results(scheduler.schedule("ns", "c2")) == [("port", "node-a", "vhu-br-vhost-1")]
    api.put(_claim("c3"))
    assert _results(scheduler.schedule("ns", "c3", node="node-b")) == [("port", "node-b", "vhu-br-vhost-0")]
    api.put(_claim("c4"))
    assert _results(scheduler.schedule("ns", "c4")) == [("port", "node-b", "vhu-br-vhost-1")]  # node-a is full
    api.put(_claim("c5"))
    with pytest.raises(AllocationError, match="'port'"):
        scheduler.schedule("ns", "c5")
    assert "allocation" not in (api.get("resource.k8s.io/v1", "ResourceClaim", "c5", "ns") or {}).get("status", {})


def test_first_available_constraints_and_class_config(api: ApiServer, scheduler: Scheduler) -> None:
    first = {"name": "nic", "firstAvailable": [
        {"name": "huge", "deviceClassName": "vhostuser.vhostplug.io", "count": 5},
        {"name": "pair", "deviceClassName": "vhostuser.vhostplug.io", "count": 2,
         "selectors": [{"cel": {"expression": f'{A}.bridge == "br-fast"'}}]},
    ]}  # fmt: skip
    api.put(_claim("fa", [first]))
    assert _results(scheduler.schedule("ns", "fa", node="node-a")) == [
        ("nic/pair", "node-a", "vhu-br-fast-0"), ("nic/pair", "node-a", "vhu-br-fast-1")]  # fmt: skip
    # two requests on one NUMA node: on node-a br-vhost is NUMA 0 and br-fast NUMA 1, so both come from br-vhost
    numa = [{"requests": ["a", "b"], "matchAttribute": f"{DRIVER}/numaNode"}]
    api.put(_claim("numa", [_req("a", 1, f'{A}.bridge == "br-vhost"'), _req("b")], constraints=numa))
    assert sorted(_results(scheduler.schedule("ns", "numa", node="node-a"))) == [
        ("a", "node-a", "vhu-br-vhost-0"), ("b", "node-a", "vhu-br-vhost-1")]  # fmt: skip
    # a class with config: FromClass first, for the requests of that class
    cls = copy.deepcopy(api.get("resource.k8s.io/v1", "DeviceClass", "vhostuser.vhostplug.io"))
    assert cls is not None
    opaque = {"driver": DRIVER, "parameters": {"apiVersion": "vhostplug.io/v1alpha1", "kind": "VhostUserConfig", "mtu": 1500}}  # fmt: skip
    cls["spec"]["config"] = [{"opaque": opaque}]
    api.put(cls)
    api.put(_claim("cfg"))
    config = scheduler.schedule("ns", "cfg", node="node-b")["status"]["allocation"]["devices"]["config"]
    assert [c["source"] for c in config] == ["FromClass", "FromClaim"] and config[0]["opaque"] == opaque
    assert config[0]["requests"] == ["port"]


def test_only_complete_pools_at_their_newest_generation() -> None:
    old, new = _slice("node-a", 1), _slice("node-a", 2)
    new["spec"]["devices"] = new["spec"]["devices"][:1]
    assert [c.device["name"] for c in usable_devices([old, new])] == ["vhu-br-vhost-0"]
    half = _slice("node-a", 3)
    half["spec"]["pool"]["resourceSliceCount"] = 2  # the other slice is not written yet
    assert usable_devices([old, new, half]) == []
    network = _slice("node-a")
    network["spec"].pop("nodeName")
    assert usable_devices([network]) == []


def test_refusals_name_what_is_wrong() -> None:
    classes = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "DeviceClass"}
    slices = [_slice("node-a")]
    with pytest.raises(AllocationError, match=r"'port'.*does not compile"):
        allocate(_claim("x", [_req("port", 1, "device.attributes[")]), slices, classes, set())
    with pytest.raises(AllocationError, match="DeviceClass 'nope' does not exist"):
        allocate(_claim("x", [_req("port", cls="nope")]), slices, classes, set())
    with pytest.raises(AllocationError, match="'vdpa'"):
        allocate(_claim("x", [_req("vdpa", cls="vdpa.vhostplug.io")]), slices, classes, set())  # none published
    taken = {(DRIVER, "node-a", f"vhu-br-{b}-{i}") for b in ("vhost", "fast") for i in (0, 1)}
    with pytest.raises(AllocationError, match="not enough matching free devices"):
        allocate(_claim("x", [_req("port")]), slices, classes, taken)
    everything = allocate(_claim("x", [{"name": "all", "exactly": {"deviceClassName": "vhostuser.vhostplug.io", "allocationMode": "All"}}]), slices, classes, set())  # fmt: skip
    assert len(everything["devices"]["results"]) == 4
