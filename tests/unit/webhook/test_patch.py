"""What the webhook adds to a pod, seen through the real process: the JSONPatch applied back onto the pod."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.webhook.pods import launcher_pod, patched
from vhostplug_testsupport.webhook import Webhook


def test_virt_launcher_pod_gets_devices_and_links_folder(webhook: Webhook) -> None:
    nets = json.dumps(
        [
            {"name": "vhu-net", "namespace": "default", "interface": "pod6c270ef2f25"},
            {"name": "vhu-net"},
            {"name": "sriov"},
            {"name": "vhu-fast", "namespace": "infra"},
        ]
    )
    pod = launcher_pod(nets)
    resp = webhook.review(pod, uid="launcher-1")
    out = patched(resp, pod)
    compute, sidecar, console = out["spec"]["containers"]
    assert compute["resources"]["requests"] == {
        "memory": "1Gi",
        "vhostplug.io/vhostuser": "2",
        "vhostplug.io/vhostuser-numa0": "1",
    }
    assert compute["resources"]["limits"] == {"vhostplug.io/vhostuser": "2", "vhostplug.io/vhostuser-numa0": "1"}
    assert "intel.com/sriov" not in compute["resources"]["requests"]
    assert {"name": "vhostplug-links", "emptyDir": {}} in out["spec"]["volumes"]
    for c in (compute, sidecar):
        assert {"name": "vhostplug-links", "mountPath": "/var/run/vhostplug-links"} in c["volumeMounts"]
    assert "volumeMounts" not in console
    # idempotent: the mutated pod needs nothing more
    again = webhook.review(out, uid="launcher-2")
    assert again["allowed"] is True and "patch" not in again


def test_plain_pod_gets_devices_and_downward_api(webhook: Webhook) -> None:
    pod = {
        "metadata": {
            "name": "dpdk-app",
            "annotations": {"k8s.v1.cni.cncf.io/networks": "vhu-net, default/vhu-net@vhu2, plain"},
        },
        "spec": {"containers": [{"name": "app", "image": "dpdk"}, {"name": "metrics", "image": "exporter"}]},
    }
    out = patched(webhook.review(pod, uid="plain-1"), pod)
    app, metrics = out["spec"]["containers"]
    assert app["resources"] == {"requests": {"vhostplug.io/vhostuser": "2"}, "limits": {"vhostplug.io/vhostuser": "2"}}
    assert "resources" not in metrics
    (vol,) = [v for v in out["spec"]["volumes"] if v["name"] == "vhostplug-podnetinfo"]
    assert {i["path"]: i["fieldRef"]["fieldPath"] for i in vol["downwardAPI"]["items"]} == {
        "annotations": "metadata.annotations",
        "labels": "metadata.labels",
    }
    for c in (app, metrics):
        assert {"name": "vhostplug-podnetinfo", "mountPath": "/etc/podnetinfo", "readOnly": True} in c["volumeMounts"]


def test_pods_without_our_networks_are_untouched(webhook: Webhook) -> None:
    for nets in ("sriov", "plain, missing-nad", None):
        pod: dict[str, Any] = {"metadata": {"annotations": {}}, "spec": {"containers": [{"name": "a"}]}}
        if nets:
            pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] = nets
        resp = webhook.review(pod)
        assert resp["allowed"] is True and "patch" not in resp, resp
