"""Kubernetes protobuf bodies for the stand-in kube-apiserver: the envelope, Pod metadata and Event fields decoded,
unknown fields skipped, bad bodies refused with Status objects, and a pods/status write over HTTP that sets the
annotations and keeps the stored status (what Multus does with network-status)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from vhostplug.lab import apiserver_proto
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.apiserver_proto import CONTENT_TYPE, MAGIC, decode
from vhostplug.lab.apistore import ApiError
from vhostplug.lab.k8swire import k8s_pb2 as pb


def _body(kind: str, raw: bytes, api_version: str = "v1") -> bytes:
    env = pb.Unknown(typeMeta=pb.TypeMeta(apiVersion=api_version, kind=kind), raw=raw, contentType="")
    return MAGIC + env.SerializeToString()


def _pod_raw(annotations: dict[str, str], rv: str = "") -> bytes:
    meta = pb.ObjectMeta(name="p", namespace="ns", uid="u1", annotations=annotations)
    if rv:
        meta.resourceVersion = rv
    # field 2 (spec) as client-go writes it: unknown to our subset, skipped
    return pb.Pod(metadata=meta).SerializeToString() + b"\x12\x02\x0a\x00"


def test_pod_metadata_is_decoded_and_spec_skipped() -> None:
    obj = decode(_body("Pod", _pod_raw({"k8s.v1.cni.cncf.io/network-status": "[]"}, "7")))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "7",
            "annotations": {"k8s.v1.cni.cncf.io/network-status": "[]"},
        },
    }


def test_event_fields_are_decoded() -> None:
    ev = pb.Event(
        metadata=pb.ObjectMeta(name="p.1", namespace="ns"),
        involvedObject=pb.ObjectReference(kind="Pod", namespace="ns", name="p", uid="u1"),
        reason="AddedInterface",
        message="Add net1 [10.0.0.2/24] from ns/vhu",
        source=pb.EventSource(component="multus"),
        count=1,
        type="Normal",
    )
    obj = decode(_body("Event", ev.SerializeToString()))
    assert obj["reason"] == "AddedInterface" and obj["type"] == "Normal" and obj["count"] == 1
    assert obj["involvedObject"] == {"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u1"}
    assert obj["source"] == {"component": "multus"} and obj["metadata"]["name"] == "p.1"


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b'{"kind": "Pod"}', 400, "magic"),
        (MAGIC + b"\xff\xff\xff", 400, "runtime.Unknown"),
        (_body("Secret", b""), 415, "only for Pod, Event"),
        (_body("Pod", b"\x0a\x05\x0a"), 400, "does not decode"),
    ],
)
def test_bad_bodies_are_refused(body: bytes, code: int, words: str) -> None:
    with pytest.raises(ApiError) as err:
        decode(body)
    assert err.value.code == code and words in str(err.value.status["message"])


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = apiserver_proto.install(ApiServer()).start()
    try:
        yield server
    finally:
        server.stop()


def _put(api: ApiServer, path: str, body: bytes) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(api.url + path, data=body, method="PUT", headers={"Content-Type": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_pod_status_write_in_protobuf_sets_annotations_and_keeps_status(api: ApiServer) -> None:
    stored = api.put(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
         "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}}
    )  # fmt: skip
    rv = stored["metadata"]["resourceVersion"]
    code, out = _put(api, "/api/v1/namespaces/ns/pods/p/status", _body("Pod", _pod_raw({"a": "b"}, rv)))
    assert code == 200, out
    pod = api.get("v1", "Pod", "p", "ns")
    assert pod is not None and pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["status"] == {"phase": "Running"} and pod["spec"] == {"containers": [{"name": "a"}]}
    # the same write again names a stale resourceVersion: 409, as kube-apiserver answers
    code, out = _put(api, "/api/v1/namespaces/ns/pods/p/status", _body("Pod", _pod_raw({"a": "c"}, rv)))
    assert code == 409 and out["reason"] == "Conflict"
    # a body of another kind than the path's
    code, out = _put(api, "/api/v1/namespaces/ns/pods/p/status", _body("Event", b""))
    assert code == 400 and "Event body sent to pods" in str(out["message"])
