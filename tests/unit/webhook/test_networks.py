"""The networks annotation: names checked before anything is asked of the API, and bounded per pod."""

from __future__ import annotations

import json

import pytest

from tests.unit.webhook.pods import net_pod, patched
from vhostplug_testsupport.webhook import ApiServer, Webhook, nad_hits, paths, put_nad


@pytest.mark.parametrize(
    "networks",
    [
        "x/../../../../../../../api/v1/namespaces/kube-system/secrets/admin-token",
        "vh#frag",
        "vh?watch=1",
        "default/vh/extra",
        "../vh",
        "VH",
        "\ud800",
        json.dumps([{"name": "\ud800"}]),
        json.dumps([{"name": "../../../api/v1/namespaces/kube-system/secrets/admin-token"}]),
        json.dumps([{"name": "vh", "namespace": "kube-system/secrets"}]),
        json.dumps([{"name": "vh", "namespace": 7}]),
        "a" * 254,
    ],
)
def test_network_names_are_validated_before_any_request(webhook: Webhook, api: ApiServer, networks: str) -> None:
    before = paths(api)
    resp = webhook.review(net_pod(networks), uid="attack")
    assert resp["allowed"] is False and resp["status"]["code"] == 400, resp
    assert (
        "not a network name" in resp["status"]["message"]
        or "not a namespace" in resp["status"]["message"]
        or ("not of the form" in resp["status"]["message"])
    )
    assert paths(api) == before, "the webhook asked the API about an invalid name"


def test_networks_per_pod_are_bounded(webhook: Webhook, api: ApiServer) -> None:
    before = len(paths(api))
    resp = webhook.review(net_pod(", ".join(f"n{i}" for i in range(2000))), uid="many")
    assert resp["allowed"] is False and resp["status"]["code"] == 400 and "at most 64" in resp["status"]["message"]
    resp = webhook.review(net_pod(json.dumps([{"name": f"n{i}"} for i in range(65)])), uid="many-json")
    assert resp["allowed"] is False and "at most 64" in resp["status"]["message"]
    assert len(paths(api)) == before
    # 64 mentions of one network: one lookup, 64 devices
    put_nad(api, "default", "uniq-net", {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"})
    pod = net_pod(", ".join(["uniq-net"] * 64))
    out = patched(webhook.review(pod, uid="dup"), pod)
    assert out["spec"]["containers"][0]["resources"]["requests"] == {"vhostplug.io/vhostuser": "64"}
    assert nad_hits(api, "default", "uniq-net") == 1
