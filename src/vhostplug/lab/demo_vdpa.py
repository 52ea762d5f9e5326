"""The demo's vDPA phase: stand-in vDPA hardware (see :mod:`vhostplug.lab.vdpa_parts`: a sysfs tree the device
plugin's pool reads, veth pairs as virtio-vdpa netdev + representor), the lab kubelet allocating from the vDPA pool,
Multus' device-info copy and CNI ADD with ``"device": "vdpa"``, and two pods pinging each other through their
representors on the OVS-DPDK bridge. DEL (cleanup) gives each netdev back to the host under its own name."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_state import Names
from vhostplug.lab.multus import NAMESPACE, CniCall, devinfo_path, exec_cni, netconf

VDPA_NAD = "vhostplug-vdpa"
VDPA_SUBNET = "10.58.0.0/24"
VDPA_PODS = ("vdpa-a", "vdpa-b")


def vdpa_resource(run_dir: Path) -> str:
    """The lab's vDPA resource: its own per lab, as the stand-in devices' IDs are the same in every lab and the
    device plugin's device-info files (named by resource and device) share the machine's folder."""
    return f"vhostplug.io/vdpa_lab{Names.of(run_dir).tag}"


def pool_config(paths: Any) -> dict[str, Any]:
    """The agent's ``devicePlugin.vdpa`` section: one pool of virtio vDPA devices on the lab's stand-in tree."""
    resource = vdpa_resource(paths.run_dir)
    return {
        "sysfsRoot": str(paths.vdpa_dir / "sys"),
        "devRoot": str(paths.vdpa_dir / "dev"),
        "rescanSeconds": 1,
        "pools": [{"resourceName": resource, "selectors": {"vdpaType": "virtio"}}],
    }


def run_vdpa(ctx: DemoContext) -> None:
    from vhostplug import deviceinfo
    from vhostplug.deviceplugin.vdpa import env_base
    from vhostplug.lab import pods
    from vhostplug.lab.ovs import PrivateOvs
    from vhostplug.lab.podresources.server import PodRef
    from vhostplug.lab.vdpa_parts import StandIn

    resource = vdpa_resource(ctx.run_dir)
    with ctx.progress.phase("vDPA: two pods ping through their representors on OVS", [ctx.paths.agent_log]) as ph:
        switch_ns = PrivateOvs(ctx.paths.ovs_dir).netns
        parts = StandIn(ctx.paths.vdpa_dir, switch_netns=switch_ns)
        ctx.state.add("vdpa_parts", {"root": str(parts.root), "switch_netns": switch_ns, "representors": []})
        ph.doing(f"stand-in vDPA parts in {parts.root}: PF, 2 VFs, veth pairs (representors in {switch_ns})")
        parts.build_pf()
        for i in range(len(VDPA_PODS)):
            ctx.state.data["vdpa_parts"][-1]["representors"].append(f"vr{parts.tag}{i}")
            ctx.state.save()
            parts.add(i, "virtio")
        ph.doing(f"lab kubelet: wait for {resource} to list 2 healthy devices (device plugin rescan)")
        ctx.kubelet.wait_for(resource, lambda ds: len(ds) >= 2 and all(d.health == "Healthy" for d in ds), timeout=30)
        rows: list[dict[str, Any]] = []
        for name in VDPA_PODS:
            uid = str(uuid.uuid4())
            netns = ctx.names.netns(name)
            ph.doing(f"ip netns add {netns} + unshare --mount holder for pod {name}")
            ctx.state.add("pods", {"name": name, "netns": netns, "holder": None})
            pod = pods.create_pod(name, NAMESPACE, uid, netns, tmpfs=())
            ctx.state.data["pods"][-1] = pod.to_json()
            ctx.state.save()
            ph.doing(f"kubelet Allocate 1 x {resource} for pod {name}")
            ids, resp = ctx.kubelet.allocate(resource, 1, pod=PodRef(NAMESPACE, name))
            pci = resp.envs[env_base(resource)]  # Multus passes the PCI address as deviceID
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            src = deviceinfo.dp_dir(ctx.paths.devinfo_dir) / deviceinfo.dp_file_name(resource, str(ids[0]))
            devinfo = devinfo_path(ctx.paths, VDPA_NAD, cid)
            devinfo.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, devinfo)
            conf = netconf(VDPA_NAD, ctx.paths, ctx.names.bridge("d"), pci, devinfo, VDPA_SUBNET)
            conf.update({"device": "vdpa", "resourceName": resource})
            call = CniCall("pod", name, uid, cid, pod.netns_path, pci, conf)
            ph.doing(f"exec {ctx.paths.cni_bin} (CNI_COMMAND=ADD, device vdpa {ids[0]} = {pci}) for pod {name}")
            ctx.state.add("attachments", call.to_json())
            call.result = exec_cni(ctx.paths.cni_bin, ctx.paths.cni_bin_dir, call, "ADD")
            rep, iface = call.result["interfaces"][0], call.result["interfaces"][1]
            rows.append(
                {
                    "pod": name,
                    "device": f"{ids[0]} ({pci})",
                    "netdev": iface["name"],
                    "mac": iface["mac"],
                    "ip": call.result["ips"][0]["address"],
                    "representor": rep["name"],
                    "bridge": conf["bridge"],
                    "_pod": pod,
                }
            )
        for me, peer in ((rows[0], rows[1]), (rows[1], rows[0])):
            ip = peer["ip"].split("/")[0]
            ph.doing(f"ping -c 3 {ip} (in pod {me['pod']}, through {me['representor']} and {peer['representor']})")
            out = me.pop("_pod").exec("ping", "-c", "3", "-i", "0.2", "-W", "2", ip, what="ping through OVS")
            me.update({"peer": peer["pod"], **_ping_summary(out)})
        ctx.report["vdpa"] = rows
        ph.note = "; ".join(f"{r['pod']} {r['ping_received']}/{r['ping_transmitted']} replies" for r in rows)


def _ping_summary(out: str) -> dict[str, Any]:
    sent = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", out)
    return {
        "ping_transmitted": int(sent.group(1)) if sent else 0,
        "ping_received": int(sent.group(2)) if sent else 0,
        "rtt_min_ms": float(rtt.group(1)) if rtt else None,
        "rtt_avg_ms": float(rtt.group(2)) if rtt else None,
        "rtt_max_ms": float(rtt.group(3)) if rtt else None,
    }
