"""The demo's DRA VM, as KubeVirt ≥ 1.9 runs a VMI whose network is a resourceClaim: the virt-launcher pod's claim
made from its template, allocated by CEL, prepared by the agent and its CDI edits applied to the pod; the hook
sidecar, running in that pod's mount namespace, reads the socket path and MTU from the claim's KEP-5304 device
metadata (no network-info, no NAD, no Multus); libvirt defines and starts the domain it returns, and the VM pings a
device-plugin VM through OVS.

As for the lab's other VMs, the virt-launcher's compute container is the host itself (libvirtd runs there): the
claim's socket folder is bind-mounted at its container path on the host too, under a pod claim name unique to this
lab (so labs side by side never share that path); the mount and the folders made for it are in the demo's state and
undone at cleanup.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_dra import REQUEST, api_of, pod_and_claim, prepare
from vhostplug.lab.multus import NAMESPACE

#: a static address on the VMs' subnet that its host-local range does not hand out
DRA_VM_IP = "10.57.0.200/24"
NETWORK = "dranet"


def _host_bind(ctx: DemoContext, host_folder: str, container_folder: str) -> None:
    """The claim's folder at its container path on the host (the lab's compute container is the host)."""
    made = []
    for p in reversed([Path(container_folder), *Path(container_folder).parents]):
        if not p.exists():
            p.mkdir(mode=0o755)
            made.append(str(p))
    ctx.state.add("host_mounts", {"path": container_folder, "made": made})
    subprocess.run(["mount", "--bind", host_folder, container_folder], check=True, capture_output=True)


def _vmi(name: str, pod_claim: str, mac: str) -> bytes:
    return json.dumps(
        {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "resourceClaims": [{"name": pod_claim, "resourceClaimTemplateName": "vhostuser-lab"}],
                "domain": {
                    "devices": {"interfaces": [{"name": NETWORK, "binding": {"name": "vhostuser"}, "macAddress": mac}]}
                },
                "networks": [{"name": NETWORK, "resourceClaim": {"claimName": pod_claim, "requestName": REQUEST}}],
            },
        }
    ).encode()


def run_dra_vm(ctx: DemoContext) -> None:
    import grpc
    from lightkube import Client, KubeConfig
    from lxml import etree

    from vhostplug.kubevirt.hooks import v1alpha3_pb2, v1alpha3_pb2_grpc
    from vhostplug.lab import pods, vms
    from vhostplug.lab.demo_vms import _traversable, start_sidecar
    from vhostplug.lab.scheduler import Scheduler

    name = "virt-launcher-vm-d"
    root = ctx.run_dir / "vm" / "d"
    root.mkdir(parents=True, exist_ok=True)
    (root / "network-info").write_text("")  # KubeVirt writes none for a DRA network: the sidecar must not need it
    with ctx.progress.phase(
        "DRA VM: claim prepared, sidecar reads the device metadata, VM pings a peer", [ctx.paths.agent_log]
    ) as ph:
        api, _ = api_of(ctx)
        pod_claim = f"vm{ctx.names.tag}"
        pod, claim = pod_and_claim(api, ctx, name, pod_claim, "v")
        meta = claim["metadata"]
        ph.doing(f"scheduler: allocate {meta['name']} on the VM bridge (CEL)")
        scheduler = Scheduler(Client(KubeConfig.from_file(ctx.paths.apiserver_kubeconfig), field_manager="lab"))
        claim = scheduler.schedule(NAMESPACE, meta["name"], ctx.paths.node_name, pod["metadata"])
        ctx.state.add("dra_claims", {"namespace": NAMESPACE, "name": meta["name"], "uid": meta["uid"]})
        netns = ctx.names.netns("vmd")
        ph.doing(f"sandbox of {name}")
        ctx.state.add("pods", {"name": name, "netns": netns, "holder": None})
        lab_pod = pods.create_pod(name, NAMESPACE, pod["metadata"]["uid"], netns)
        ctx.state.data["pods"][-1] = lab_pod.to_json()
        ctx.state.save()
        entry = prepare(ctx, ph, api, name, claim, lab_pod.holder.pid)
        host_folder = str(Path(entry["host_socket"]).parent)
        container_folder = str(Path(entry["container_socket"]).parent)
        ph.doing(f"compute container (the host): bind {host_folder} at {container_folder}")
        _host_bind(ctx, host_folder, container_folder)
        _traversable(ctx.paths.socket_root, root)
        hook = start_sidecar(ctx, ph, root, ["nsenter", f"--mount=/proc/{lab_pod.holder.pid}/ns/mnt", "--"])
        lv = vms.Libvirt()
        lv.start()
        for d in lv.started:
            ctx.state.add("libvirt_started", d)
        peer = ctx.report["vms"][0]["ip"].split("/")[0] if ctx.report.get("vms") else "10.57.0.2"
        domain = ctx.names.domain("vm-d")
        mac = f"02:00:00:{ctx.names.tag[0:2]}:{ctx.names.tag[2:4]}:{ctx.names.tag[4:6]}"
        cmdline = f"vhp.ip={DRA_VM_IP} vhp.peer={peer} vhp.interval=0"
        base = vms.lab_domain_xml(domain, root / "console.log", cmdline)
        ph.doing(f"OnDefineDomain over gRPC at {hook} (VMI network {NETWORK} = resourceClaim {pod_claim}/{REQUEST})")
        with grpc.insecure_channel(f"unix:{hook}") as ch:
            res = v1alpha3_pb2_grpc.CallbacksStub(ch).OnDefineDomain(  # type: ignore[no-untyped-call]
                v1alpha3_pb2.OnDefineDomainParams(domainXML=base.encode(), vmi=_vmi(domain, pod_claim, mac)),
                timeout=60,
                wait_for_ready=True,  # the hooks socket file exists a moment before the server listens
            )
        (root / "domain-from-sidecar.xml").write_bytes(res.domainXML)
        found: Any = etree.fromstring(res.domainXML).xpath(f"//interface[alias/@name='ua-{NETWORK}']")
        (iface,) = found
        if iface.find("source").get("path") != entry["container_socket"]:
            raise RuntimeError(f"the sidecar's socket {iface.find('source').get('path')} is not the claim's")
        entry["domain_mtu"] = int(iface.find("mtu").get("size"))
        ctx.state.add("domains", domain)
        lv.define(vms.add_lab_overrides(res.domainXML), root)
        ph.doing(f"virsh start {domain}; wait for its ping of {peer} on the serial console")
        lv.start_domain(domain)
        lv.wait_state(domain, "running", 60)
        console = vms.Console(root / "console.log")
        console.wait_for(r"VHP-PING-OK", 120)
        m = console.wait_for(r"(\d+) packets transmitted, (\d+) packets received", 30)
        entry.update(vm=domain, vm_ip=DRA_VM_IP, peer=peer, vm_ping=f"{m.group(2)}/{m.group(1)}")
        ctx.report.setdefault("dra", []).append(entry)
        ph.note = f"{domain}←{entry['device']} pinged {peer}: {entry['vm_ping']}"
