"""Every object under deploy/ against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail)
for the Kubernetes versions we claim, the NetworkAttachmentDefinitions against the NAD CRD's schema (written here from
the network plumbing working group's spec) and our own netconf model, the agent's ConfigMap through the agent's own
configuration model, least-privilege RBAC, a scoped webhook, and one image name and tag everywhere."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
#: The Kubernetes versions docs/deploy.md claims: the oldest supported and the newest kubernetes-validate knows.
OLDEST = "1.30"
VERSIONS = [OLDEST, ".".join(latest_version().split(".")[:2])]
#: DRA objects (deploy/dra/, resource.k8s.io/v1) exist from Kubernetes 1.34: checked there and at the newest.
DRA_OLDEST = "1.34"
#: Kinds of other projects' APIs whose schemas kubernetes-validate does not ship and we do not vendor: they are
#: checked for what vhostplug relies on by tests/unit/kubevirt/test_deploy.py and below, not against a schema.
NOT_SCHEMA_CHECKED = {("kubevirt.io/v1", "KubeVirt"), ("kubevirt.io/v1", "VirtualMachineInstance")} | {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}
NAD = ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
#: The NAD CRD's openAPIV3Schema per the NPWG "Kubernetes Network Custom Resource Definition De-facto Standard"
#: (v1): spec.config is a string holding a CNI configuration as JSON; metadata is a standard ObjectMeta.
NAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "k8s.cni.cncf.io/v1"},
        "kind": {"const": "NetworkAttachmentDefinition"},
        "metadata": {
            "$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"config": {"type": "string"}},
        },
    },
}
IMAGE = "ghcr.io/vhostplug/vhostplug"


def _objects() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


OBJECTS = _objects()


def _id(obj: tuple[Path, dict[str, Any]]) -> str:
    path, doc = obj
    return f"{path.relative_to(DEPLOY)}:{doc['kind']}/{doc['metadata']['name']}"


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in OBJECTS if doc["kind"] == kind]


def _node_agent(kind: str) -> list[dict[str, Any]]:
    """The node agent's objects of ``kind`` (deploy/node/; the DRA variant in deploy/dra/ has its own test)."""
    return [doc for path, doc in OBJECTS if doc["kind"] == kind and path.parent.name == "node"]


def _definitions(version: str) -> referencing.Resource[Any]:
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    (folder,) = [d for d in schemas.iterdir() if d.name == f"v{version}.0-local-strict"]
    return referencing.Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))


def test_deploy_has_the_objects_we_expect() -> None:
    kinds = {doc["kind"] for _, doc in OBJECTS}
    assert {
        "DaemonSet",
        "ConfigMap",
        "Deployment",
        "MutatingWebhookConfiguration",
        "NetworkAttachmentDefinition",
    } <= kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("obj", OBJECTS, ids=_id)
def test_object_passes_the_kubernetes_schema(obj: tuple[Path, dict[str, Any]], version: str) -> None:
    _, doc = obj
    key = (doc["apiVersion"], doc["kind"])
    if doc["apiVersion"].startswith("resource.k8s.io/") and version == OLDEST:
        version = DRA_OLDEST
    if key == NAD:
        registry: referencing.Registry[Any] = _definitions(version) @ referencing.Registry()
        jsonschema.Draft202012Validator(NAD_SCHEMA, registry=registry).validate(doc)
        return
    try:
        validated = kubernetes_validate.validate(doc, version, strict=True)
    except SchemaNotFoundError:
        assert key in NOT_SCHEMA_CHECKED, f"{key} has no schema here: validate it or list it (and say so in docs)"
        return
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{_id(obj)} fails Kubernetes {version}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert key not in NOT_SCHEMA_CHECKED, f"{key} is schema-checked now: drop it from NOT_SCHEMA_CHECKED and the docs"
    assert validated == version


def test_the_schema_check_catches_a_typo() -> None:
    (ds,) = _node_agent("DaemonSet")
    broken = json.loads(json.dumps(ds))
    broken["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    (nad, *_) = _by_kind("NetworkAttachmentDefinition")
    bad_nad = dict(nad, spec={"config": {"not": "a string"}})
    registry: referencing.Registry[Any] = _definitions(VERSIONS[-1]) @ referencing.Registry()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(NAD_SCHEMA, registry=registry).validate(bad_nad)


@pytest.mark.parametrize("nad", _by_kind("NetworkAttachmentDefinition"), ids=lambda d: d["metadata"]["name"])
def test_nad_config_is_a_vhostplug_netconf(nad: dict[str, Any]) -> None:
    from vhostplug.cni import netconf, wire

    raw = wire.decode_netconf(nad["spec"]["config"].encode())  # as the agent decodes stdin
    conf = netconf.parse(raw)
    assert raw["type"] == "vhostplug" and raw["name"] == nad["metadata"]["name"]
    assert conf.cni_version in ("1.0.0", "1.1.0")
    # Multus hands the allocated device over only when the NAD names the resource and the plugin declares it
    assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"].startswith("vhostplug.io/")
    assert raw["capabilities"] in (
        {"deviceID": True, "CNIDeviceInfoFile": True},
        {"deviceID": True, "CNIDeviceInfoFile": True, "mac": True},  # a VMI interface's MAC (docs/kubevirt.md)
    )


def test_agent_configmap_loads_through_the_agents_config_model(tmp_path: Path) -> None:
    from vhostplug.agent.config import load
    from vhostplug.deviceplugin.config import load_config

    (cm,) = _node_agent("ConfigMap")
    path = tmp_path / "agent.yaml"
    path.write_text(cm["data"]["agent.yaml"])
    config = load(path)
    assert config.device_plugin is not None
    load_config(config.device_plugin)
    # every host folder the agent uses is mounted into the agent container at the same path
    (ds,) = _node_agent("DaemonSet")
    (agent,) = ds["spec"]["template"]["spec"]["containers"]
    mounts = {Path(m["mountPath"]) for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    host_mounts = {Path(m["mountPath"]) for m in agent["volumeMounts"] if "hostPath" in volumes[m["name"]]}
    assert config.dataplane.ovsdb.startswith("unix:")
    # every path the agent config names (new ones included: a field added to the model is checked here too) lives in
    # a host folder mounted into the agent, so that it survives the agent's restarts and is shared with the node
    values = [*config.model_dump().values(), *config.dataplane.model_dump().values()]
    paths = [v for v in values if isinstance(v, Path)]
    paths += [p for v in values if isinstance(v, list) for p in v if isinstance(p, Path)]  # e.g. socketRoots
    paths += [Path(p) for p in config.kuryr_mount_points]  # host folders the agent makes kuryr sockets in
    paths += [config.listen.parent, Path(config.dataplane.ovsdb[5:]).parent]
    for path in paths:
        if path == config.listen:
            continue
        assert any(path == m or m in path.parents for m in host_mounts), f"{path} is in no host mount of the agent"
    assert mounts >= host_mounts
    # the node policy the agent derives from it: the example networks select within it
    node_policy = config.to_policy()
    for nad in _by_kind("NetworkAttachmentDefinition"):
        bridge = json.loads(nad["spec"]["config"]).get("bridge")
        assert bridge is None or bridge in node_policy.bridges, (nad["metadata"]["name"], bridge)
    assert node_policy.datapath_type == "netdev"
    assert agent["command"][-2:] == ["--config", f"/etc/vhostplug/{next(iter(cm['data']))}"]


def test_the_agent_sees_what_the_runtime_hands_the_shim() -> None:
    """The shim forwards CNI_PATH and CNI_NETNS as the runtime gave them; the agent execs IPAM plugins from CNI_PATH
    (host-local keeps its leases under /var/lib/cni) and opens CNI_NETNS for vDPA netdevs: the same host paths must be
    visible in the agent container."""
    (ds,) = _node_agent("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (agent,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_path = {
        m["mountPath"]: volumes[m["name"]]["hostPath"]["path"]
        for m in agent["volumeMounts"]
        if "hostPath" in volumes[m["name"]]
    }
    dest = init["command"][init["command"].index("--dest") + 1]
    (cni_bin,) = [volumes[m["name"]] for m in init["volumeMounts"] if m["mountPath"] == dest]
    shim_folder = cni_bin["hostPath"]["path"]
    assert host_path.get(shim_folder) == shim_folder  # CNI_PATH names the host folder the shim was installed in
    assert host_path.get("/var/lib/cni") == "/var/lib/cni"
    assert host_path.get("/var/run/netns") == "/var/run/netns"
    (netns,) = [m for m in agent["volumeMounts"] if m["mountPath"] == "/var/run/netns"]
    assert netns["mountPropagation"] == "HostToContainer"  # namespaces bound after the agent started


def test_the_agent_gets_no_kubernetes_api_access() -> None:
    (ds,) = _node_agent("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    bound = {s["name"] for b in _by_kind("ClusterRoleBinding") + _by_kind("RoleBinding") for s in b["subjects"]}
    assert pod.get("serviceAccountName", "default") not in bound


def _role_of(sa: str, namespace: str) -> dict[str, Any]:
    """The one ClusterRole bound to a service account (and that no other subject is bound to it)."""
    subject = {"kind": "ServiceAccount", "name": sa, "namespace": namespace}
    (binding,) = [b for b in _by_kind("ClusterRoleBinding") if subject in b["subjects"]]
    assert binding["subjects"] == [subject]
    (role,) = [r for r in _by_kind("ClusterRole") if r["metadata"]["name"] == binding["roleRef"]["name"]]
    return role


def test_the_webhook_may_only_read_network_attachment_definitions() -> None:
    (dep,) = _by_kind("Deployment")
    role = _role_of(dep["spec"]["template"]["spec"]["serviceAccountName"], dep["metadata"]["namespace"])
    assert role["rules"] == [
        {"apiGroups": ["k8s.cni.cncf.io"], "resources": ["network-attachment-definitions"], "verbs": ["get"]}
    ]
    assert not _by_kind("Role")
    assert len(_by_kind("ClusterRoleBinding")) == len(_by_kind("ClusterRole")) == 2  # the webhook's, DRA's


def test_the_dra_agent_may_only_publish_slices_and_prepare_claims() -> None:
    (sa,) = [a for a in _by_kind("ServiceAccount") if a["metadata"]["name"] == "vhostplug-dra"]
    role = _role_of("vhostplug-dra", sa["metadata"]["namespace"])
    rules = {(g, r): sorted(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}  # fmt: skip
    assert rules == {
        ("resource.k8s.io", "resourceslices"): sorted(["get", "list", "watch", "create", "update", "patch", "delete"]),
        ("resource.k8s.io", "resourceclaims"): ["get"],
        ("resource.k8s.io", "resourceclaims/status"): ["patch", "update"],
        ("", "nodes"): ["get"],
    }
    # the device plugin DaemonSet keeps no API access (test above); the DeviceClasses select our driver's devices
    classes = {c["metadata"]["name"]: c["spec"]["selectors"] for c in _by_kind("DeviceClass")}
    assert set(classes) == {"vhostuser.vhostplug.io", "vdpa.vhostplug.io"}
    for selectors in classes.values():
        assert all('device.driver == "vhostuser.vhostplug.io"' in s["cel"]["expression"] for s in selectors)


def test_the_webhook_is_scoped() -> None:
    (config,) = _by_kind("MutatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] in ("Fail", "Ignore") and 1 <= hook["timeoutSeconds"] <= 10
    assert hook["sideEffects"] == "None"
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    # kube-system and our own namespaces are never sent to the webhook, by name (labels can be removed)
    by_name = [e for e in hook["namespaceSelector"]["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name"]
    assert by_name and by_name[0]["operator"] == "NotIn"
    ours = {ns["metadata"]["name"] for ns in _by_kind("Namespace")}
    assert {"kube-system"} | ours <= set(by_name[0]["values"])
    # a pod can opt out by label
    assert hook["objectSelector"]["matchExpressions"] == [
        {"key": "vhostplug.io/webhook", "operator": "NotIn", "values": ["disabled"]}
    ]


def test_the_webhook_certificate_has_a_source() -> None:
    (config,) = _by_kind("MutatingWebhookConfiguration")
    (cert,) = _by_kind("Certificate")
    (svc,) = _by_kind("Service")
    ns = cert["metadata"]["namespace"]
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{ns}/{cert['metadata']['name']}"
    assert f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc" in cert["spec"]["dnsNames"]
    (dep,) = _by_kind("Deployment")
    secrets = [v["secret"]["secretName"] for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert secrets == [cert["spec"]["secretName"]]
    assert "generate" in (REPO / "docs" / "deploy.md").read_text().lower()  # the documented step without cert-manager


def _images(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("image", "sidecarImage") and isinstance(v, str)]
        return found + [i for v in node.values() for i in _images(v)]
    if isinstance(node, list):
        return [i for v in node for i in _images(v)]
    return []


def test_every_image_is_the_one_make_image_builds() -> None:
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    ours = [i for _, doc in OBJECTS for i in _images(doc) if "vhostplug" in i]
    assert len(ours) >= 4  # init container, agent, webhook, KubeVirt binding sidecar
    assert set(ours) == {f"{IMAGE}:{version}"}
    build = (REPO / "scripts" / "build-image.sh").read_text()
    assert f"NAME={IMAGE}\n" in build  # `make image` names it the same way
    # the image's entrypoint is KubeVirt's binding sidecar (KubeVirt runs it with the image's own command), so every
    # other container must name its command
    assert """--entrypoint '["vhostplug", "kubevirt-sidecar"]'""" in build
    for kind in ("DaemonSet", "Deployment"):
        for obj in _by_kind(kind):
            pod = obj["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                assert c["command"][0] == "vhostplug", c["name"]


def test_the_dra_agent_is_the_node_agent_with_dra_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/dra/vhostplug-node-dra.yaml differs from the node agent only where DRA needs it: its config turns DRA on
    (every DRA folder in a host mount), NODE_NAME from the pod's node, the vhostplug-dra service account, kubelet's
    plugin folders and the CDI folder mounted, and it runs exactly on the nodes the node agent leaves out."""
    from vhostplug.agent.config import load

    dra_objs = {doc["kind"]: doc for path, doc in OBJECTS if path.name == "vhostplug-node-dra.yaml"}
    (node_cm,), (node_ds,) = _node_agent("ConfigMap"), _node_agent("DaemonSet")
    cm, ds = dra_objs["ConfigMap"], dra_objs["DaemonSet"]
    node_conf = yaml.safe_load(node_cm["data"]["agent.yaml"])
    conf = yaml.safe_load(cm["data"]["agent.yaml"])
    assert {k: v for k, v in conf.items() if k != "dra"} == node_conf
    monkeypatch.setenv("NODE_NAME", "node-a")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "agent.yaml").write_text(cm["data"]["agent.yaml"])
        dra = load(Path(tmp) / "agent.yaml").dra
    assert dra.enabled and dra.api_server.url is None  # in-cluster
    pod, node_pod = ds["spec"]["template"]["spec"], node_ds["spec"]["template"]["spec"]
    (agent,), (node_agent,) = pod["containers"], node_pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_mounts = {Path(m["mountPath"]) for m in agent["volumeMounts"] if "hostPath" in volumes[m["name"]]}
    for path in (dra.plugins_dir, dra.registry_dir, dra.cdi_dir):
        assert path in host_mounts and Path(volumes[_mount_name(agent, path)]["hostPath"]["path"]) == path
    assert agent["env"] == [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    assert pod["serviceAccountName"] == "vhostplug-dra" and pod["automountServiceAccountToken"] is True
    assert pod["nodeSelector"] == {**node_pod["nodeSelector"], "vhostplug.io/dra": "true"}
    (term,) = node_pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "vhostplug.io/dra", "operator": "NotIn", "values": ["true"]}]
    same = ("initContainers", "hostNetwork", "tolerations")
    assert all(pod[k] == node_pod[k] for k in same)
    assert {k: v for k, v in agent.items() if k not in ("env", "volumeMounts")} == {
        k: v for k, v in node_agent.items() if k != "volumeMounts"
    }
    extra = [m for m in agent["volumeMounts"] if m not in node_agent["volumeMounts"]]
    assert {m["mountPath"] for m in extra} == {str(dra.plugins_dir), str(dra.registry_dir), str(dra.cdi_dir)}


def _mount_name(container: dict[str, Any], path: Path) -> str:
    (name,) = [m["name"] for m in container["volumeMounts"] if Path(m["mountPath"]) == path]
    return str(name)
