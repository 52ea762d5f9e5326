"""Malformed AdmissionReviews and pods get clear answers in the protocol's own format, and the server lives on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.webhook.pods import net_pod
from vhostplug_testsupport.webhook import Webhook, review_body


def test_malformed_reviews_get_clear_answers_and_server_lives(webhook: Webhook) -> None:
    status, out = webhook.post(b"{not json")
    assert status == 400 and "not JSON" in out["error"]
    status, out = webhook.post(json.dumps({"kind": "AdmissionReview", "request": {"object": {}}}).encode())
    assert status == 400 and "uid" in out["error"]
    body = {"kind": "AdmissionReview", "request": {"uid": "s1", "kind": {"kind": "Service"}, "object": {}}}
    status, out = webhook.post(json.dumps(body).encode())
    assert status == 200 and out["response"]["allowed"] is True and "only Pods" in out["response"]["warnings"][0]
    bad_pod = {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": '[{"nope": 1}]'}},
        "spec": {"containers": [{"name": "a"}]},
    }
    resp = webhook.review(bad_pod, uid="bad-ann")
    assert resp["allowed"] is False and "needs a name" in resp["status"]["message"]
    assert webhook.proc.poll() is None


def test_deeply_nested_bodies_get_400_not_a_traceback(webhook: Webhook) -> None:
    status, out = webhook.post(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    assert status == 400 and "nested deeper" in out["error"]
    status, out = webhook.post(b"[" * 200_000)
    assert status == 400 and out["error"]
    # decodable, but deeper than any pod: an AdmissionReview denial naming the problem
    deep: Any = "x"
    for _ in range(200):
        deep = {"k": deep}
    pod = {"metadata": {"annotations": {"deep": deep}}, "spec": {"containers": [{"name": "a"}]}}
    status, out = webhook.post(json.dumps(review_body(pod, uid="deep-1")).encode())
    assert status == 200 and out["response"]["uid"] == "deep-1"
    assert out["response"]["allowed"] is False and out["response"]["status"]["code"] == 400
    assert "nested deeper" in out["response"]["status"]["message"]
    assert webhook.proc.poll() is None


@pytest.mark.parametrize(
    ("pod", "field"),
    [
        ({"metadata": "x", "spec": {"containers": [{"name": "a"}]}}, "metadata"),
        ({"metadata": {}, "spec": {"containers": "x"}}, "spec.containers"),
        ({"metadata": {}, "spec": {"containers": ["x"]}}, "spec.containers[0]"),
        ({"metadata": {}, "spec": {"containers": [{"name": "a", "resources": "x"}]}}, "spec.containers[0].resources"),
        (
            {"metadata": {}, "spec": {"containers": [{"name": "a", "resources": {"limits": []}}]}},
            "spec.containers[0].resources.limits",
        ),
        ({"metadata": {"labels": "x"}, "spec": {"containers": [{"name": "a"}]}}, "metadata.labels"),
        ({"metadata": {"annotations": ["x"]}, "spec": {"containers": [{"name": "a"}]}}, "metadata.annotations"),
        ({"metadata": {}, "spec": {"containers": [{"name": "a"}], "volumes": "x"}}, "spec.volumes"),
        ({"metadata": {}, "spec": {"containers": [{"name": "a", "volumeMounts": [3]}]}}, "volumeMounts[0]"),
        ({"metadata": {}, "spec": "x"}, "spec"),
    ],
)
def test_wrongly_typed_pod_fields_are_denied_naming_the_field(
    webhook: Webhook, pod: dict[str, Any], field: str
) -> None:
    pod["metadata"] = (
        pod["metadata"]
        if not isinstance(pod["metadata"], dict)
        else {
            **pod["metadata"],
            **({} if "annotations" in pod["metadata"] else {"annotations": {"k8s.v1.cni.cncf.io/networks": "vhu-net"}}),
        }
    )
    resp = webhook.review(pod, uid="typed")
    assert resp["allowed"] is False and resp["status"]["code"] == 400, resp
    assert field in resp["status"]["message"] and "internal error" not in resp["status"]["message"]


def test_a_pod_review_without_a_pod_object_is_denied(webhook: Webhook) -> None:
    for obj in ("x", ["a"], 3):
        resp = webhook.review(obj, uid="obj")
        assert resp["allowed"] is False and resp["status"]["code"] == 400
        assert "request.object must be an object" in resp["status"]["message"]


def test_bad_namespace_of_the_request_is_denied(webhook: Webhook) -> None:
    for ns in (["x"], "Default", "a/b"):
        resp = webhook.review(net_pod("vhu-net"), uid="ns", namespace=ns)
        assert resp["allowed"] is False and resp["status"]["code"] == 400 and "namespace" in resp["status"]["message"]
