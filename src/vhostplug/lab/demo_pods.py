"""The demo's pod phase, as kubelet, the runtime and Multus make a pod with a vhost-user interface: sandbox (netns +
mount namespace), device Allocate and its mounts, device-info copy, CNI ADD, the downward-API annotations file."""

from __future__ import annotations

import json
import uuid
from typing import Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.multus import (
    NAMESPACE,
    NETWORK_STATUS,
    NETWORKS,
    CniCall,
    annotations_file,
    multus_devinfo,
    netconf,
    network_status,
)

POD_NAD = "vhostplug-pods"
POD_SUBNET = "10.56.0.0/24"
POD_NAMES = ("testpmd-a", "testpmd-b")


def create_pods(ctx: DemoContext, names: tuple[str, ...] = POD_NAMES) -> None:
    from vhostplug.lab import pods

    with ctx.progress.phase("pods: sandbox, device, CNI ADD, downward API", [ctx.paths.agent_log]) as ph:
        ph.doing("mount points for the pods' private tmpfs")
        for d in pods.ensure_host_dirs(pods.POD_TMPFS):
            ctx.state.add("host_dirs", d)
        for name in names:
            create_pod(ctx, ph, name)
        ph.note = ", ".join(f"{c.name}←{c.device}" for c in ctx.calls.values())


def create_pod(ctx: DemoContext, ph: Any, name: str) -> None:
    """One testpmd pod on ``ctx``'s node: sandbox, device Allocate and its mounts, CNI ADD, downward API file."""
    from vhostplug.lab import pods
    from vhostplug.lab.kubelet import apply_to_pod

    uid = str(uuid.uuid4())
    netns = ctx.names.netns(f"pod-{name[-1]}")
    ph.doing(f"ip netns add {netns} + unshare --mount holder for pod {name}")
    ctx.state.add("pods", {"name": name, "netns": netns, "holder": None})
    pod = pods.create_pod(name, NAMESPACE, uid, netns)
    ctx.state.data["pods"][-1] = pod.to_json()
    ctx.state.save()
    ctx.pods[name] = pod
    device, resp = ctx.allocate(ph, name)
    ph.doing(f"bind-mount {device}'s folder into pod {name} (kubelet applies the Allocate mounts)")
    apply_to_pod(resp, pod.holder.pid)
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    ph.doing(f"Multus: copy the dp device-info of {device}")
    devinfo = multus_devinfo(ctx.paths, POD_NAD, cid, device)
    conf = netconf(POD_NAD, ctx.paths, ctx.names.bridge("p"), device, devinfo, POD_SUBNET)
    call = CniCall("pod", name, uid, cid, pod.netns_path, device, conf)
    ctx.attach(ph, call)
    ph.doing(f"write {pods.ANNOTATIONS} in pod {name}")
    status = network_status(POD_NAD, call.result, devinfo)
    pod.write(pods.ANNOTATIONS, annotations_file({NETWORK_STATUS: json.dumps(status), NETWORKS: POD_NAD}))
