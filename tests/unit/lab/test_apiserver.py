"""The stand-in kube-apiserver through real HTTP(S): lightkube (generic resources, a kubeconfig it wrote, a bearer
token, TLS) and raw requests for what lightkube does not send (bad bodies, other content types, JSON patch)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client, KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import PatchType

from vhostplug.lab.apiserver import ApiServer, parse_path

Slice = create_global_resource("resource.k8s.io", "v1", "ResourceSlice", "resourceslices")
Claim = create_namespaced_resource("resource.k8s.io", "v1", "ResourceClaim", "resourceclaims")
Widget = create_namespaced_resource("example.io", "v1", "Widget", "widgets")


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def api(tls_dir: Path) -> Iterator[ApiServer]:
    with ApiServer(tls_dir=tls_dir, token="t0ken") as server:
        yield server


@pytest.fixture(scope="module")
def client(api: ApiServer, tls_dir: Path) -> Client:
    return Client(KubeConfig.from_file(api.kubeconfig(tls_dir / "kubeconfig")), field_manager="test")


def _slice(name: str, node: str, driver: str = "vhostuser.vhostplug.io") -> Any:
    return Slice(
        metadata={"name": name, "labels": {"node": node}},
        spec={"driver": driver, "nodeName": node, "pool": {"name": node, "generation": 1, "resourceSliceCount": 1}},
    )


def _raw(api: ApiServer, method: str, path: str, body: bytes | None = None, ctype: str = "application/json",
         token: str | None = "t0ken") -> tuple[int, Any]:  # fmt: skip
    import ssl

    assert api.cert is not None
    headers = {"Content-Type": ctype} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(api.url + path, data=body, method=method, headers=headers)
    ctx = ssl.create_default_context(cafile=str(api.cert))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_paths_name_resources() -> None:
    assert parse_path("/api/v1/namespaces/ns1/pods/p/status") == parse_path("/api/v1/namespaces/ns1/pods/p/status")
    route = parse_path("/api/v1/namespaces/ns1/pods/p/status")
    assert route is not None and (route.group, route.namespace, route.plural, route.name, route.subresource) == (
        "", "ns1", "pods", "p", "status")  # fmt: skip
    route = parse_path("/api/v1/namespaces/ns1")
    assert route is not None and (route.namespace, route.plural, route.name) == (None, "namespaces", "ns1")
    route = parse_path("/apis/resource.k8s.io/v1/resourceslices")
    assert route is not None and (route.group, route.version, route.plural, route.name) == (
        "resource.k8s.io", "v1", "resourceslices", None)  # fmt: skip
    route = parse_path("/api/v1/namespaces/ns1/status")
    assert route is not None and (route.plural, route.name, route.subresource) == ("namespaces", "ns1", "status")
    route = parse_path("/api/v1/namespaces/ns1/events")
    assert route is not None and (route.namespace, route.plural, route.name) == ("ns1", "events", None)
    assert parse_path("/metrics") is None
    assert parse_path("/apis/a/v1/namespaces/n/x/y/z/w") is None


def test_create_get_list_with_selectors(api: ApiServer, client: Client) -> None:
    made = client.create(_slice("node-a-vhu", "node-a"))
    meta = made.metadata
    assert meta.uid and meta.resourceVersion and meta.generation == 1 and meta.creationTimestamp
    client.create(_slice("node-b-vhu", "node-b"))
    client.create(_slice("node-b-gpu", "node-b", driver="gpu.example.com"))
    got = client.get(Slice, "node-a-vhu")
    assert got.spec["nodeName"] == "node-a" and got.metadata.uid == meta.uid
    names = {s.metadata.name for s in client.list(Slice, fields={"spec.nodeName": "node-b"})}
    assert names == {"node-b-vhu", "node-b-gpu"}
    names = {s.metadata.name for s in client.list(Slice, fields={"spec.nodeName": "node-b", "spec.driver": "gpu.example.com"})}  # fmt: skip
    assert names == {"node-b-gpu"}
    assert {s.metadata.name for s in client.list(Slice, labels={"node": "node-a"})} == {"node-a-vhu"}
    # paging: lightkube follows `continue`
    assert len(list(client.list(Slice, chunk_size=1))) >= 3
    # a field the resource does not support, as kube-apiserver answers
    status, body = _raw(api, "GET", "/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.pool.name%3Dx")
    assert status == 400 and body["kind"] == "Status" and "field label not supported" in body["message"]
    with pytest.raises(ApiError) as exc:
        client.create(_slice("node-a-vhu", "node-a"))
    assert exc.value.status.code == 409 and exc.value.status.reason == "AlreadyExists"
    with pytest.raises(ApiError) as exc:
        client.get(Slice, "nope")
    assert exc.value.status.code == 404 and exc.value.status.reason == "NotFound"
    assert exc.value.status.details.name == "nope"


def test_update_conflicts_on_a_stale_resource_version(client: Client) -> None:
    first = client.create(_slice("conflict", "node-c"))
    first.spec["pool"]["generation"] = 2
    second = client.replace(first)
    assert int(second.metadata.resourceVersion) > int(first.metadata.resourceVersion)
    assert second.metadata.generation == 2  # the spec changed
    first.spec["pool"]["generation"] = 3
    with pytest.raises(ApiError) as exc:
        client.replace(first)  # still names the first resourceVersion
    assert exc.value.status.code == 409 and exc.value.status.reason == "Conflict"
    assert client.get(Slice, "conflict").spec["pool"]["generation"] == 2
    # the same write again changes nothing, not even the resourceVersion
    again = client.replace(second)
    assert again.metadata.resourceVersion == second.metadata.resourceVersion


def test_status_is_a_subresource(api: ApiServer, client: Client) -> None:
    claim = Claim(metadata={"name": "c1", "namespace": "ns1"}, spec={"devices": {"requests": []}},
                  status={"allocation": {"ignored": True}})  # fmt: skip
    made = client.create(claim)
    assert made.status is None or made.status == {}  # create drops the status
    client.patch(Claim.Status, "c1", {"status": {"devices": [{"device": "d0"}]}}, namespace="ns1",
                 patch_type=PatchType.MERGE)  # fmt: skip
    after = client.get(Claim, "c1", namespace="ns1")
    assert after.status == {"devices": [{"device": "d0"}]} and after.metadata.generation == 1
    # a write to the object keeps the status
    meta = {"name": "c1", "namespace": "ns1", "labels": {"x": "y"}, "resourceVersion": after.metadata.resourceVersion}
    kept = client.replace(Claim(metadata=meta, spec=after.spec, status={"devices": []}))
    assert kept.status == {"devices": [{"device": "d0"}]} and kept.metadata.labels == {"x": "y"}
    assert kept.metadata.generation == 1  # metadata only
    stored = api.get("resource.k8s.io/v1", "ResourceClaim", "c1", "ns1")
    assert stored is not None and stored["status"]["devices"][0]["device"] == "d0"


def test_patch_types(api: ApiServer, client: Client) -> None:
    client.create(Widget(metadata={"name": "w", "namespace": "ns1", "labels": {"a": "1", "b": "2"}}, spec={"n": 1}))
    out = client.patch(Widget, "w", {"metadata": {"labels": {"a": None}}, "spec": {"m": 2}}, namespace="ns1",
                       patch_type=PatchType.MERGE)  # fmt: skip
    assert out.metadata.labels == {"b": "2"} and out.spec == {"n": 1, "m": 2} and out.metadata.generation == 2
    out = client.patch(Widget, "w", {"spec": {"n": 5}}, namespace="ns1")  # strategic merge, lightkube's default
    assert out.spec == {"n": 5, "m": 2}
    ops = [{"op": "add", "path": "/spec/list", "value": [1]}, {"op": "add", "path": "/spec/list/-", "value": 2},
           {"op": "test", "path": "/spec/n", "value": 5}, {"op": "remove", "path": "/spec/m"}]  # fmt: skip
    out = client.patch(Widget, "w", ops, namespace="ns1", patch_type=PatchType.JSON)
    assert out.spec == {"n": 5, "list": [1, 2]}
    rv = out.metadata.resourceVersion
    with pytest.raises(ApiError) as exc:  # all or nothing
        client.patch(Widget, "w", [{"op": "remove", "path": "/spec/n"}, {"op": "test", "path": "/spec/n", "value": 5}],
                     namespace="ns1", patch_type=PatchType.JSON)  # fmt: skip
    assert exc.value.status.code == 422
    assert client.get(Widget, "w", namespace="ns1").metadata.resourceVersion == rv
    with pytest.raises(ApiError) as exc:  # a stale resourceVersion in a patch is a precondition
        client.patch(Widget, "w", {"metadata": {"resourceVersion": "1"}, "spec": {"n": 0}}, namespace="ns1",
                     patch_type=PatchType.MERGE)  # fmt: skip
    assert exc.value.status.reason == "Conflict"
    applied = client.apply(Widget(metadata={"name": "w2", "namespace": "ns1"}, spec={"n": 9}))
    assert applied.metadata.uid and api.get("example.io/v1", "Widget", "w2", "ns1", plural="widgets") is not None
    status, body = _raw(api, "PATCH", "/apis/example.io/v1/namespaces/ns1/widgets/w", b"{}", "text/plain")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


def test_watch_replays_from_a_resource_version_and_filters(api: ApiServer, client: Client) -> None:
    start = client.create(_slice("watched-1", "node-w"))
    client.create(_slice("other-node", "node-x"))
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def watch() -> None:
        for kind, obj in client.watch(Slice, fields={"spec.nodeName": "node-w"},
                                      resource_version=start.metadata.resourceVersion):  # fmt: skip
            seen.append((kind, obj.metadata.name))
            if kind == "DELETED":
                done.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    client.create(_slice("watched-2", "node-w"))
    client.delete(Slice, "watched-1")
    assert done.wait(30), seen
    assert seen == [("ADDED", "watched-2"), ("DELETED", "watched-1")]


def test_requests_are_logged_and_faults_injected(api: ApiServer, client: Client) -> None:
    before = len(api.requests)
    client.create(Claim(metadata={"name": "logged", "namespace": "ns2"}, spec={}))
    (req,) = api.requests[before:]
    assert (req.method, req.path, req.content_type, req.status) == (
        "POST", "/apis/resource.k8s.io/v1/namespaces/ns2/resourceclaims", "application/json", 201)  # fmt: skip
    assert json.loads(req.body)["metadata"]["name"] == "logged"
    api.fail("GET", "/apis/resource.k8s.io/v1/namespaces/ns2/resourceclaims/logged", 503)
    with pytest.raises(ApiError) as exc:
        client.get(Claim, "logged", namespace="ns2")
    assert exc.value.status.code == 503
    assert client.get(Claim, "logged", namespace="ns2").metadata.name == "logged"  # once only
    status, body = _raw(api, "GET", "/api/v1/namespaces/ns2/pods", token=None)
    assert status == 401 and body["reason"] == "Unauthorized"


def test_decoders_for_other_content_types(api: ApiServer) -> None:
    status, body = _raw(api, "POST", "/api/v1/namespaces/ns3/events", b"name=e1", "application/x-test")
    assert status == 415 and body["kind"] == "Status"

    def decode(res: Any, sub: str, raw: bytes) -> Any:
        assert res.plural == "events" and sub == ""
        key, _, value = raw.decode().partition("=")
        if key != "name":
            raise ValueError("no name")
        return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": value}, "reason": "Test"}

    api.register_decoder("application/x-test", decode)
    status, body = _raw(api, "POST", "/api/v1/namespaces/ns3/events", b"name=e1", "application/x-test")
    assert status == 201 and body["metadata"]["namespace"] == "ns3" and body["reason"] == "Test"
    status, body = _raw(api, "POST", "/api/v1/namespaces/ns3/events", b"nam=e1", "application/x-test")
    assert status == 400 and "no name" in body["message"]


def test_bad_requests_get_status_objects(api: ApiServer) -> None:
    path = "/apis/resource.k8s.io/v1/namespaces/ns4/resourceclaims"
    status, body = _raw(api, "POST", path, b"{not json")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body = _raw(api, "POST", path, json.dumps({"metadata": {"name": "Bad_Name"}}).encode())
    assert status == 422 and body["reason"] == "Invalid"
    status, body = _raw(api, "POST", path, json.dumps({"metadata": {"name": "x", "namespace": "other"}}).encode())
    assert status == 400 and "namespace" in body["message"]
    status, body = _raw(api, "POST", path, json.dumps({"kind": "Pod", "metadata": {"name": "x"}}).encode())
    assert status == 400
    status, body = _raw(api, "POST", path, json.dumps({"metadata": {"name": "x", "resourceVersion": "7"}}).encode())
    assert status == 400 and "resourceVersion" in body["message"]
    status, body = _raw(api, "POST", path, json.dumps({"metadata": {"generateName": "gen-"}}).encode())
    assert status == 201 and body["metadata"]["name"].startswith("gen-")
    status, body = _raw(api, "GET", f"{path}?limit=ten")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body = _raw(api, "DELETE", f"{path}/whatever", b"{oops")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body = _raw(api, "GET", "/apis/resource.k8s.io/v1/namespaces/ns4/resourceslices")  # cluster-scoped
    assert status == 404
    status, body = _raw(api, "DELETE", f"{path}/{body.get('metadata', {}).get('name', 'x')}",
                        json.dumps({"preconditions": {"uid": "not-it"}}).encode())  # fmt: skip
    assert status in (404, 409)
    assert api.list("resource.k8s.io/v1", "ResourceClaim", "ns4")


def test_seed_and_wait(api: ApiServer, client: Client) -> None:
    seeded = api.put({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                      "metadata": {"name": "seeded", "namespace": "ns5"}, "status": {"allocation": {"x": 1}}})  # fmt: skip
    assert seeded["status"] == {"allocation": {"x": 1}}  # seeding keeps the status
    assert client.get(Claim, "seeded", namespace="ns5").status == {"allocation": {"x": 1}}

    def later() -> None:
        client.patch(Claim.Status, "seeded", {"status": {"devices": []}}, namespace="ns5",
                     patch_type=PatchType.MERGE)  # fmt: skip

    threading.Thread(target=later, daemon=True).start()
    got = api.wait_for(lambda: (c := api.get("resource.k8s.io/v1", "ResourceClaim", "seeded", "ns5")) and
                       "devices" in c["status"] and c)  # fmt: skip
    assert got["status"]["devices"] == []
    with pytest.raises(TimeoutError):
        api.wait_for(lambda: None, timeout=0.2)
    # a collection delete by label
    api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "ns5", "labels": {"k": "v"}}})
    status, _ = _raw(api, "DELETE", "/api/v1/namespaces/ns5/pods?labelSelector=k%3Dv")
    assert status == 200 and api.list("v1", "Pod", "ns5") == []


def test_plain_http_server_stops(tmp_path: Path) -> None:
    server = ApiServer().start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        client = Client(KubeConfig.from_file(server.kubeconfig(tmp_path / "kc")))
        client.create(_slice("plain", "n"))
        assert [s.metadata.name for s in client.list(Slice)] == ["plain"]
        assert (tmp_path / "kc").stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/healthz", timeout=2)


def test_watch_list_sends_the_state_then_a_bookmark(api: ApiServer, client: Client) -> None:
    """client-go's watch-list: the current objects as ADDED, then a BOOKMARK marking the end of the initial events."""
    import ssl

    client.create(_slice("wl-1", "node-wl"))
    assert api.cert is not None
    query = "watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&fieldSelector=spec.nodeName%3Dnode-wl&timeoutSeconds=1"
    req = urllib.request.Request(f"{api.url}/apis/resource.k8s.io/v1/resourceslices?{query}",
                                 headers={"Authorization": "Bearer t0ken"})  # fmt: skip
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(api.cert)), timeout=10) as resp:
        events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [("ADDED", "wl-1"), ("BOOKMARK", None)]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    status, body = _raw(api, "GET", "/apis/resource.k8s.io/v1/resourceslices?watch=true&sendInitialEvents=true")
    assert status == 422 and body["reason"] == "Invalid"
