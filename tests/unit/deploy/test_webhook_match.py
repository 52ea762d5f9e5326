"""The webhook's ``matchConditions`` (deploy/kubevirt/webhook.yaml), evaluated with a real CEL implementation
(cel-python) on the variables kube-apiserver gives them (``object``, ``oldObject``, ``request``): our pods are sent,
unrelated pods are not, malformed annotations are sent (the webhook denies them saying why), and no sample makes an
expression fail (an error would apply ``failurePolicy: Fail`` to a pod that is none of ours). And what the conditions
leave out, the webhook would not have changed: each sample also goes through the webhook's own review."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import celpy
import pytest
import yaml

from tests.conftest import REPO
from vhostplug.webhook.config import WebhookConfig
from vhostplug.webhook.review import answer

NETWORKS = "k8s.v1.cni.cncf.io/networks"
#: what kube-apiserver defines for a webhook's matchConditions (authorizer aside: ours do not use it)
VARIABLES = ("object", "oldObject", "request")


def _conditions() -> list[dict[str, str]]:
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "kubevirt" / "webhook.yaml").read_text()) if d]
    (config,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Fail"  # for the pods the conditions send
    conditions: list[dict[str, str]] = hook["matchConditions"]
    return conditions


def pod(annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"generateName": "p-", "namespace": "default"}
    if annotations is not None:
        meta["annotations"] = annotations
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "app"}]}}


def launcher(networks: str | None) -> dict[str, Any]:
    out = pod({"kubevirt.io/domain": "vm1"} | ({NETWORKS: networks} if networks is not None else {}))
    out["metadata"]["labels"] = {"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": "vm1"}
    out["spec"]["containers"] = [{"name": "compute"}, {"name": "hook-sidecar-0"}]
    return out


def request(obj: dict[str, Any]) -> dict[str, Any]:
    """An AdmissionReview v1 ``request`` for a pod CREATE, as kube-apiserver builds it."""
    return {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": []},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }


SENT = {
    "pod on one network": pod({NETWORKS: "vhu-net"}),
    "pod on networks as JSON": pod({NETWORKS: json.dumps([{"name": "vhu-net", "namespace": "infra"}])}),
    "pod on a network of another plugin": pod({NETWORKS: "sriov-net"}),  # only the NAD can tell
    "virt-launcher on a network": launcher('[{"name":"vhu-net","interface":"pod6c270ef2f25"}]'),
    "malformed JSON annotation": pod({NETWORKS: '[{"nope": 1}'}),
    "malformed name": pod({NETWORKS: "x/../../secrets"}),
    "networks with blanks around": pod({NETWORKS: "  vhu-net ,"}),
}
NOT_SENT = {
    "pod without annotations": pod(),
    "pod with other annotations": pod({"prometheus.io/scrape": "true"}),
    "empty networks annotation": pod({NETWORKS: ""}),
    "blank networks annotation": pod({NETWORKS: " \t\n"}),
    "annotation named like ours in another key": pod({"k8s.v1.cni.cncf.io/network-status": "[]"}),
    "virt-launcher without networks": launcher(None),
    "pod with labels only": pod(labels={"app": "web"}),
}


def _programs() -> list[tuple[str, celpy.Runner]]:
    env = celpy.Environment()
    return [(c["name"], env.program(env.compile(c["expression"]))) for c in _conditions()]


def matches(req: dict[str, Any]) -> bool:
    """What kube-apiserver decides: every condition true -> the webhook is called. An error fails the test."""
    activation = {name: celpy.json_to_cel(req.get(name)) for name in VARIABLES}
    verdicts = []
    for name, program in _programs():
        result = program.evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), f"{name} gave {result!r}, not a bool"
        verdicts.append(bool(result))
    return all(verdicts)


def test_the_conditions_are_few_and_use_only_what_kubernetes_provides() -> None:
    conditions = _conditions()
    assert 1 <= len(conditions) <= 64  # kube-apiserver's limit
    for c in conditions:
        assert c["name"] and len(c["name"]) <= 63
        names = {n for n in ("object", "oldObject", "request", "authorizer", "params") if n in c["expression"]}
        assert names <= set(VARIABLES), names


@pytest.mark.parametrize("name", SENT)
def test_our_pods_and_malformed_annotations_are_sent(name: str) -> None:
    assert matches(request(SENT[name])) is True


@pytest.mark.parametrize("name", NOT_SENT)
def test_pods_that_name_no_network_are_not_sent(name: str) -> None:
    assert matches(request(NOT_SENT[name])) is False


class _AllOurs:
    """Every NAD is a vhostplug network: the most the webhook could want to change."""

    async def resource_of(self, namespace: str, name: str) -> str | None:
        return "vhostplug.io/vhostuser"


@pytest.mark.parametrize("name", NOT_SENT)
def test_what_the_conditions_leave_out_the_webhook_would_not_change(name: str) -> None:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request(NOT_SENT[name])}
    status, out = asyncio.run(answer(json.dumps(body).encode(), _AllOurs(), WebhookConfig()))
    assert status == 200 and out["response"]["allowed"] is True and "patch" not in out["response"], out


@pytest.mark.parametrize("name", ["pod on one network", "virt-launcher on a network"])
def test_what_the_conditions_send_the_webhook_does_change(name: str) -> None:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request(SENT[name])}
    status, out = asyncio.run(answer(json.dumps(body).encode(), _AllOurs(), WebhookConfig()))
    assert status == 200 and "patch" in out["response"], out
