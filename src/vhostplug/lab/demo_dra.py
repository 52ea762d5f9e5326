"""The demo's DRA phase, as a Kubernetes ≥ 1.34 cluster runs a pod whose vhost-user port comes from a ResourceClaim:
the DeviceClasses of ``deploy/dra`` in the (stand-in) API server; per pod a claim made from the pod's template the
way kube-controller-manager makes it (``<pod>-<pod claim>-<5 chars>``, annotation ``resource.kubernetes.io/pod-claim-
name``, owned by the pod); the stand-in scheduler allocating it from the agent's ResourceSlices by CEL; kubelet's
``NodePrepareResources`` through the plugin watcher's registration; the returned CDI devices' edits applied to the
pod as a runtime would; testpmd on the ``--vdev`` podinfo finds from the claim's device metadata, ``txonly`` →
``rxonly`` both ways. Unprepare (kubelet's, at pod deletion) runs at teardown (:func:`unprepare`).
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_traffic import (
    APP_LCORES,
    FRAME_BYTES,
    TRAFFIC_SECONDS,
    WARMUP_SECONDS,
    cpu_layout,
    start_testpmd,
)
from vhostplug.lab.multus import NAMESPACE
from vhostplug.lab.rate import measure

if TYPE_CHECKING:
    from vhostplug.lab.testpmd import Testpmd

#: two pods; the last letter names each one's netns and DPDK prefix (not a/b: the device-plugin pods' letters)
DRA_PODS = ("dra-p", "dra-q")
POD_CLAIM = "vhu"
REQUEST = "port"
DEVICE_CLASSES = Path(__file__).resolve().parents[3] / "deploy" / "dra" / "deviceclasses.yaml"
RESOURCE_API = "/apis/resource.k8s.io/v1"


def _template_spec(bridge: str) -> dict[str, Any]:
    """What the pods' ResourceClaimTemplate asks: one server-mode port on the lab's pod bridge, MTU 1500."""
    return {
        "devices": {
            "requests": [
                {
                    "name": REQUEST,
                    "exactly": {
                        "deviceClassName": "vhostuser.vhostplug.io",
                        "allocationMode": "ExactCount",
                        "count": 1,
                        "selectors": [
                            {
                                "cel": {
                                    "expression": f'device.attributes["vhostuser.vhostplug.io"].bridge == "{bridge}" '
                                    '&& device.attributes["vhostuser.vhostplug.io"].serverMode'
                                }
                            }
                        ],
                    },
                }
            ],
            "config": [
                {
                    "requests": [REQUEST],
                    "opaque": {
                        "driver": "vhostuser.vhostplug.io",
                        "parameters": {
                            "apiVersion": "vhostplug.io/v1alpha1",
                            "kind": "VhostUserConfig",
                            "mode": "server",
                            "mtu": 1500,
                        },
                    },
                }
            ],
        }
    }


def api_of(ctx: DemoContext) -> Any:
    from vhostplug.dra.config import ApiServerConfig
    from vhostplug.dra.kubeapi import KubeApi
    from vhostplug.lab import apiserverd

    url = apiserverd.url(ctx.paths)
    if url is None:
        raise RuntimeError(f"the lab's stand-in kube-apiserver is not running ({ctx.paths.apiserver_log})")
    return KubeApi(ApiServerConfig(url=url)), url


def _device_classes(api: Any) -> list[str]:
    names = []
    for doc in yaml.safe_load_all(DEVICE_CLASSES.read_text()):
        if doc and doc.get("kind") == "DeviceClass":
            path = f"{RESOURCE_API}/deviceclasses"
            try:
                api.request("POST", path, doc)
            except Exception as exc:  # already there from an earlier run of this lab: keep it
                if "already exists" not in str(exc):
                    raise
            names.append(doc["metadata"]["name"])
    return names


def pod_and_claim(
    api: Any, ctx: DemoContext, name: str, pod_claim: str = POD_CLAIM, bridge_kind: str = "p"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod object and its claim as kube-controller-manager makes it from the pod's template (a port on the lab
    bridge of ``bridge_kind``)."""
    pod_uid = str(uuid.uuid4())
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": pod_uid},
        "spec": {
            "nodeName": ctx.paths.node_name,
            "resourceClaims": [{"name": pod_claim, "resourceClaimTemplateName": "vhostuser-lab"}],
            "containers": [{"name": "app", "image": "dpdk-testpmd", "resources": {"claims": [{"name": pod_claim}]}}],
        },
    }
    pod = api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": f"{name}-{pod_claim}-{secrets.token_hex(3)[:5]}",
            "namespace": NAMESPACE,
            "annotations": {"resource.kubernetes.io/pod-claim-name": pod_claim},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod["metadata"]["uid"], "controller": True}
            ],
        },
        "spec": _template_spec(ctx.names.bridge(bridge_kind)),
    }
    claim = api.request("POST", f"{RESOURCE_API}/namespaces/{NAMESPACE}/resourceclaims", claim)
    return pod, claim


def run_dra(ctx: DemoContext) -> None:
    """Two pods whose ports come from ResourceClaims, prepared by the agent, testpmd through OVS both ways."""
    from lightkube import Client, KubeConfig

    from vhostplug.lab import pods
    from vhostplug.lab.drakubelet import DraKubelet
    from vhostplug.lab.ovs import OvsConfig
    from vhostplug.lab.scheduler import Scheduler

    with ctx.progress.phase(
        "DRA: claims allocated by CEL, prepared by the agent, CDI applied; testpmd through OVS",
        [ctx.paths.agent_log, ctx.paths.apiserver_log],
    ) as ph:
        ph.doing("mount points for the pods' private tmpfs")
        for d in pods.ensure_host_dirs(pods.POD_TMPFS):
            ctx.state.add("host_dirs", d)
        api, url = api_of(ctx)
        ph.doing(f"create the DeviceClasses of {DEVICE_CLASSES} in the API server at {url}")
        _device_classes(api)
        ph.doing(f"plugin watcher: register the DRA driver's socket in {ctx.paths.plugins_registry_dir}")
        kubelet = DraKubelet(ctx.paths.plugins_registry_dir)
        kubelet.register()
        ctx.dra_kubelet = kubelet
        config = KubeConfig.from_file(ctx.paths.apiserver_kubeconfig)
        scheduler = Scheduler(Client(config, field_manager="lab-scheduler"))
        entries: dict[str, dict[str, Any]] = {}
        for name in DRA_PODS:
            ph.doing(f"pod {name}: its ResourceClaim from the template (as kube-controller-manager makes it)")
            pod, claim = pod_and_claim(api, ctx, name)
            meta = claim["metadata"]
            ph.doing(f"scheduler: allocate {meta['name']} from node {ctx.paths.node_name}'s ResourceSlices (CEL)")
            claim = scheduler.schedule(NAMESPACE, meta["name"], ctx.paths.node_name, pod["metadata"])
            ctx.state.add("dra_claims", {"namespace": NAMESPACE, "name": meta["name"], "uid": meta["uid"]})
            ph.doing(f"sandbox of pod {name}")
            netns = ctx.names.netns(f"pod-{name[-1]}")
            ctx.state.add("pods", {"name": name, "netns": netns, "holder": None})
            lab_pod = pods.create_pod(name, NAMESPACE, pod["metadata"]["uid"], netns)
            ctx.state.data["pods"][-1] = lab_pod.to_json()
            ctx.state.save()
            ctx.pods[name] = lab_pod
            entries[name] = prepare(ctx, ph, api, name, claim, lab_pod.holder.pid)
        tps: dict[str, Testpmd] = {}
        try:
            for name in DRA_PODS:
                entries[name]["vdevs"] = start_testpmd(ctx, ph, name, tps)["vdevs"]
            for name, tp in tps.items():
                ph.doing(f"testpmd link up in pod {name}")
                tp.wait_link_up(0, timeout=45)
            x, y = DRA_PODS
            for s, r in ((x, y), (y, x)):
                ph.doing(f"{r}: rxonly; {s}: txonly {FRAME_BYTES}-byte frames")
                flow = measure(tps[s], tps[r], FRAME_BYTES, TRAFFIC_SECONDS, WARMUP_SECONDS, (s, r))
                entries[r]["mpps"] = round(flow.mpps, 3)
                entries[r]["from"] = s
        finally:
            for tp in tps.values():
                tp.stop()
        layout = cpu_layout(OvsConfig().pmd_cpu_mask, APP_LCORES)
        ctx.report["dra"] = list(entries.values())
        ctx.report["dra_cpu_layout"] = layout
        ph.note = ", ".join(f"{e['from']}→{e['pod']} {e['mpps']:.2f} Mpps" for e in entries.values())


def prepare(ctx: DemoContext, ph: Any, api: Any, pod: str, claim: dict[str, Any], pid: int) -> dict[str, Any]:
    """kubelet's NodePrepareResources of an allocated claim, then its CDI devices applied inside ``pid``'s mount
    namespace; returns the claim's ``dra`` report entry."""
    from vhostplug.lab import cdiapply
    from vhostplug.lab.drakubelet import Claim

    meta = claim["metadata"]
    result = claim["status"]["allocation"]["devices"]["results"][0]
    kubelet = ctx.dra_kubelet
    ph.doing(f"kubelet: NodePrepareResources({meta['name']}) over {kubelet.version}")
    resp = kubelet.prepare([Claim(NAMESPACE, meta["name"], meta["uid"])]).claims[meta["uid"]]
    if resp.error:
        raise RuntimeError(f"NodePrepareResources of {meta['name']}: {resp.error}")
    ids = [i for d in resp.devices for i in d.cdi_device_ids]
    ph.doing(f"runtime: apply CDI devices {ids} to pod {pod}")
    applied = cdiapply.apply([ctx.paths.cdi_dir], ids, pid)
    status = api.get_claim(NAMESPACE, meta["name"]).get("status", {})
    data = next(d.get("data", {}) for d in status.get("devices", []) if d.get("driver") == result["driver"])
    return {
        "pod": pod,
        "claim": meta["name"],
        "request": result["request"],
        "device": result["device"],
        "cdi_device": ids[0] if ids else "",
        "host_socket": data.get("hostSocket", ""),
        "container_socket": data.get("containerSocket", ""),
        "mtu": data.get("mtu"),
        "mounts": [c for _, c in applied.mounts],
    }


def unprepare(ctx: DemoContext) -> list[str]:
    """kubelet's NodeUnprepareResources for the claims the demo prepared (at pod deletion)."""
    from vhostplug.lab.drakubelet import Claim

    kubelet = getattr(ctx, "dra_kubelet", None)
    claims = ctx.state.data.get("dra_claims", [])
    if kubelet is None or not claims:
        return []
    resp = kubelet.unprepare([Claim(c["namespace"], c["name"], c["uid"]) for c in claims])
    done = [f"NodeUnprepareResources {c['name']}: {resp.claims[c['uid']].error or 'done'}" for c in claims]
    kubelet.close()
    ctx.dra_kubelet = None
    return done
