"""The KubeVirt deployment manifests say what the binding, the sidecar and the webhook expect of each other."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.conftest import REPO
from vhostplug.kubevirt.domain import DEFAULT_BINDING_NAME
from vhostplug.webhook import resolver as webhook

DEPLOY = REPO / "deploy" / "kubevirt"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_binding_registration() -> None:
    (kv,) = load("kubevirt-binding.yaml")
    binding = kv["spec"]["configuration"]["network"]["binding"][DEFAULT_BINDING_NAME]
    assert binding["downwardAPI"] == "device-info"
    assert binding["sidecarImage"]
    assert "migration" in binding
    assert "domainAttachmentType" not in binding  # the sidecar writes the whole interface itself


def test_example_vmi_uses_the_binding_and_our_nad() -> None:
    (nad,) = load("network-attachment-definition.yaml")
    (vmi,) = load("vmi.yaml")
    assert nad["metadata"]["annotations"][webhook.RESOURCE_ANNOTATION] == "vhostplug.io/vhostuser"
    # Multus passes the VMI interface's MAC on (runtimeConfig.mac): the port's record carries it, and the agent's
    # switch forgets it when the port's link changes (a live migration's switch-over)
    assert json.loads(nad["spec"]["config"])["capabilities"] == {
        "deviceID": True,
        "CNIDeviceInfoFile": True,
        "mac": True,
    }
    bound = [
        i for i in vmi["spec"]["domain"]["devices"]["interfaces"] if i.get("binding", {}).get("name") == "vhostuser"
    ]
    assert [i["name"] for i in bound] == ["net1"]
    nets = {n["name"]: n for n in vmi["spec"]["networks"]}
    ns, name = nets["net1"]["multus"]["networkName"].split("/")
    assert (ns, name) == (nad["metadata"]["namespace"], nad["metadata"]["name"])


def test_webhook_manifest_matches_the_server() -> None:
    docs = {d["kind"]: d for d in load("webhook.yaml")}
    (hook,) = docs["MutatingWebhookConfiguration"]["webhooks"]
    assert hook["clientConfig"]["service"]["path"] == "/mutate"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["rules"][0]["resources"] == ["pods"]
    rules = docs["ClusterRole"]["rules"]
    assert any("network-attachment-definitions" in r["resources"] and "get" in r["verbs"] for r in rules)
    command = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["vhostplug", "webhook"] and "--cert" in command and "--key" in command


def test_dra_vmi_names_a_claim_of_our_template_and_class() -> None:
    """The DRA variant: the VMI's network is a resourceClaim of a pod claim made from our template, whose request
    asks our DeviceClass and carries our driver's opaque config; the sidecar's metadata path follows from it."""
    from vhostplug.kubevirt.domain import parse_vmi
    from vhostplug.podinfo import devicemetadata

    (vmi,) = load("dra/vmi.yaml")
    (tmpl,) = load("dra/resourceclaimtemplate.yaml")
    (kv,) = load("dra/kubevirt-binding.yaml")
    assert "NetworkDevicesWithDRA" in kv["spec"]["configuration"]["developerConfiguration"]["featureGates"]
    assert "downwardAPI" not in kv["spec"]["configuration"]["network"]["binding"][DEFAULT_BINDING_NAME]
    classes = {
        d["metadata"]["name"]
        for d in yaml.safe_load_all((REPO / "deploy" / "dra" / "deviceclasses.yaml").read_text())
        if d and d["kind"] == "DeviceClass"
    }
    ref = parse_vmi(vmi).claims["dpdknet"]
    (pod_claim,) = vmi["spec"]["resourceClaims"]
    assert pod_claim == {"name": ref.claim_name, "resourceClaimTemplateName": tmpl["metadata"]["name"]}
    (request,) = tmpl["spec"]["spec"]["devices"]["requests"]
    assert request["name"] == ref.request_name and request["exactly"]["deviceClassName"] in classes
    (config,) = tmpl["spec"]["spec"]["devices"]["config"]
    assert config["opaque"]["driver"] == devicemetadata.VHOSTPLUG_DRIVER
    assert (
        devicemetadata.relative_path(
            devicemetadata.VHOSTPLUG_DRIVER, ref.claim_name, ref.request_name, from_template=True
        )
        == "resourceclaimtemplates/dpdknet-claim/vhost-port/vhostuser.vhostplug.io-metadata.json"
    )
