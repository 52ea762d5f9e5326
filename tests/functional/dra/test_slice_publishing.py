"""The real `vhostplug agent` process (DRA on, no-op dataplane) publishing its node's ResourceSlices to the stand-in
kube-apiserver over HTTPS with a token file and a CA file, as it would in a cluster: slots of the allowed bridges and
the vDPA devices of its pools (a fake sysfs), the Node as owner, pool generation bumped on every change (a vDPA device
gone, a slice deleted behind its back, a new configuration) and only then; API faults retried; only the calls its
RBAC grants; a bad slices section refused at start."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vhostplug.lab.apiserver import ApiServer
from vhostplug_testsupport.fakesys import standard
from vhostplug_testsupport.noopdataplane import NOOP_VHOSTPLUG

DRIVER = "vhostuser.vhostplug.io"
SLICES = "/apis/resource.k8s.io/v1/resourceslices"
NODE = "node-a"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(tls_dir=tmp_path_factory.mktemp("tls"), token="agent-token") as server:
        server.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
        yield server


class Agent:
    def __init__(self, root: Path, api: ApiServer, slices: dict[str, Any], vdpa: bool = True) -> None:
        self.root, self.log = root, root / "agent.log"
        (root / "token").write_text("agent-token\n")
        self.fs = standard(root / "fake") if vdpa and not (root / "fake").exists() else None
        config: dict[str, Any] = {
            "listen": str(root / "agent.sock"),
            "socketRoot": str(root / "sockets"),
            "stateDir": str(root / "state"),
            "devinfoDir": str(root / "devinfo"),
            "devicePluginDir": str(root / "dp"),
            "dataplane": {"backend": "noop"},
            "bridges": {"allowed": ["br-vhost", "br_fast"]},
            "dra": {
                "enabled": True,
                "nodeName": NODE,
                "pluginsDir": str(root / "plugins"),
                "registryDir": str(root / "registry"),
                "cdiDir": str(root / "cdi"),
                "apiServer": {"url": api.url, "tokenFile": str(root / "token"), "caFile": str(api.cert)},
                "slices": slices,
            },
        }
        if vdpa:
            config["devicePlugin"] = {
                "vhostuser": {"count": 1},
                "vdpa": {
                    "sysfsRoot": str(root / "fake" / "sys"),
                    "devRoot": str(root / "fake" / "dev"),
                    "pools": [
                        {
                            "resourceName": "vhostplug.io/vdpa_mlx",
                            "selectors": {"vendors": ["15b3"], "vdpaType": "vhost"},
                        }
                    ],
                },
            }
        (root / "agent.json").write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([*NOOP_VHOSTPLUG, "agent", "--config", str(self.root / "agent.json")], stdout=log, stderr=log)  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None


def _slices(api: ApiServer) -> list[dict[str, Any]]:
    return [s for s in api.list("resource.k8s.io/v1", "ResourceSlice") if s["spec"]["nodeName"] == NODE]


def _published(api: ApiServer, agent: Agent, generation: int) -> list[dict[str, Any]]:
    """Wait until the node's pool is at ``generation`` (and the agent still runs); its devices."""

    def check() -> list[dict[str, Any]] | None:
        assert agent.proc is not None and agent.proc.poll() is None, agent.log.read_text()[-3000:]
        found = _slices(api)
        if found and all(s["spec"]["pool"]["generation"] == generation for s in found):
            return [d for s in found for d in s["spec"]["devices"]]
        return None

    return api.wait_for(check, timeout=60)


def test_the_agent_publishes_and_keeps_its_slices(api: ApiServer, tmp_path: Path) -> None:
    agent = Agent(tmp_path, api, {"slotsPerBridge": 3, "resyncSeconds": 0.3, "bridges": {"br_fast": {"numaNode": 1}}})
    agent.start()
    try:
        devices = {d["name"]: d["attributes"] for d in _published(api, agent, 1)}
        fast = [n for n in devices if n.startswith("vhu-br-fast-")]
        assert len(fast) == 3 and len([n for n in devices if n.startswith("vhu-br-vhost-")]) == 3
        assert devices[fast[0]]["bridge"] == {"string": "br_fast"} and devices[fast[0]]["numaNode"] == {"int": 1}
        assert {n for n in devices if n.startswith("vdpa-")} == {"vdpa-vdpa0", "vdpa-vdpa1", "vdpa-vdpa2"}
        (one,) = _slices(api)
        node = api.get("v1", "Node", NODE)
        assert node is not None
        assert one["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": node["metadata"]["uid"], "controller": True}
        ]
        assert one["spec"]["driver"] == DRIVER and one["spec"]["pool"] == {"name": NODE, "generation": 1, "resourceSliceCount": 1}  # fmt: skip
        # a vDPA device goes away: the next resync publishes the pool without it, one generation up
        assert agent.fs is not None
        agent.fs.remove_vdpa("0000:b3:00.2", "vdpa2")
        assert "vdpa-vdpa2" not in {d["name"] for d in _published(api, agent, 2)}
        # someone deletes the slice: it comes back, one generation up
        api.store.delete(api.resource_for("resource.k8s.io/v1", "ResourceSlice"), "", one["metadata"]["name"])
        assert len(_published(api, agent, 3)) == 8
        # the API server fails for a while: retried, then published
        api.fail("GET", SLICES, 503, times=3)
        (again,) = _slices(api)
        api.store.delete(api.resource_for("resource.k8s.io/v1", "ResourceSlice"), "", again["metadata"]["name"])
        assert len(_published(api, agent, 4)) == 8
        assert "retrying" in agent.log.read_text()
        # only what its RBAC grants: ResourceSlices (list with its node's field selector, create, update, delete)
        # and get of its Node
        calls = {(r.method, r.path) for r in api.requests if r.path != "/version"}
        slice_calls = {(m, p) for m, p in calls if p.startswith(SLICES)}
        assert calls - slice_calls == {("GET", f"/api/v1/nodes/{NODE}")}
        assert {m for m, _ in slice_calls} <= {"GET", "POST", "PUT", "DELETE"}
        lists = [r for r in api.requests if (r.method, r.path) == ("GET", SLICES)]
        assert all(r.query.get("fieldSelector") == f"spec.nodeName={NODE},spec.driver={DRIVER}" for r in lists)
    finally:
        agent.stop()
    # a restart with the same devices writes nothing; a new configuration bumps the generation once
    writes = len([r for r in api.requests if r.method != "GET"])
    agent.start()
    try:
        lists = len([r for r in api.requests if r.method == "GET" and r.path == SLICES])
        api.wait_for(lambda: len([r for r in api.requests if r.method == "GET" and r.path == SLICES]) >= lists + 2)
        assert len([r for r in api.requests if r.method != "GET"]) == writes
        assert _slices(api)[0]["spec"]["pool"]["generation"] == 4
    finally:
        agent.stop()
    agent = Agent(tmp_path, api, {"slotsPerBridge": 1, "vdpa": False})
    agent.start()
    try:
        names = sorted(d["name"] for d in _published(api, agent, 5))
        assert len(names) == 2 and names[1] == "vhu-br-vhost-0" and names[0].startswith("vhu-br-fast-")
    finally:
        agent.stop()


def test_a_bad_slices_section_stops_the_agent_naming_the_key(api: ApiServer, tmp_path: Path) -> None:
    agent = Agent(tmp_path, api, {"bridges": {"br-elsewhere": {"numaNode": 0}}}, vdpa=False)
    out = subprocess.run([*NOOP_VHOSTPLUG, "agent", "--config", str(tmp_path / "agent.json")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "dra.slices.bridges.br-elsewhere" in out.stderr, out.stderr
    assert not agent.log.exists()


def test_the_shipped_selectors_select_the_published_devices(api: ApiServer, tmp_path: Path) -> None:
    """deploy/dra's DeviceClasses and the example claim's selectors, evaluated by cel-python against the devices
    the agent published: each class takes exactly its kind, the claim exactly the server-mode slots of br-vhost."""
    import yaml

    from tests.conftest import REPO
    from vhostplug.lab.dracel import matches

    docs = [d for f in sorted((REPO / "deploy" / "dra").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    classes = {d["metadata"]["name"]: [s["cel"]["expression"] for s in d["spec"]["selectors"]] for d in docs if d["kind"] == "DeviceClass"}  # fmt: skip
    (template,) = [d for d in docs if d["kind"] == "ResourceClaimTemplate"]
    (request,) = template["spec"]["spec"]["devices"]["requests"]
    claim_selectors = [s["cel"]["expression"] for s in request["exactly"]["selectors"]]
    agent = Agent(tmp_path, api, {"slotsPerBridge": 2, "bridges": {"br_fast": {"modes": ["client"]}}})
    for s in _slices(api):  # the earlier test's node: start from a clean pool
        api.store.delete(api.resource_for("resource.k8s.io/v1", "ResourceSlice"), "", s["metadata"]["name"])
    agent.start()
    try:
        generation = api.wait_for(lambda: next((s["spec"]["pool"]["generation"] for s in _slices(api)), None), timeout=60)  # fmt: skip
        devices = _published(api, agent, generation)
    finally:
        agent.stop()
    (driver,) = {s["spec"]["driver"] for s in _slices(api)}

    def chosen(selectors: list[str]) -> set[str]:
        return {d["name"] for d in devices if all(matches(e, driver, d) for e in selectors)}

    names = {d["name"] for d in devices}
    assert chosen(classes["vhostuser.vhostplug.io"]) == {n for n in names if n.startswith("vhu-")} and len(names) > 4
    assert chosen(classes["vdpa.vhostplug.io"]) == {"vdpa-vdpa0", "vdpa-vdpa1", "vdpa-vdpa2"}
    wanted = chosen(classes[request["exactly"]["deviceClassName"]] + claim_selectors)
    assert wanted == {"vhu-br-vhost-0", "vhu-br-vhost-1"}  # br_fast's slots are client-mode only here
    # a device of another driver is not taken by our classes
    assert not any(matches(e, "gpu.example.com", devices[0]) for e in classes["vhostuser.vhostplug.io"])
