"""The demo's VM phases, as virt-launcher and KubeVirt make a VM with a vhost-user interface: the virt-launcher pod's
sandbox, device and CNI ADD, the network-info file, the hook sidecar's ``OnDefineDomain`` over gRPC, libvirt defining
and starting the domain (QEMU under TCG), and the two VMs pinging each other through OVS on their serial consoles."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_traffic import vhostplug_exe
from vhostplug.lab.multus import IFNAME, NAMESPACE, CniCall, multus_devinfo, netconf, network_status
from vhostplug.lab.pods import ProcRef
from vhostplug.lab.report import log_tail

VM_NAD = "vhostplug-vms"
VM_SUBNET = "10.57.0.0/24"


def run_vms(ctx: DemoContext) -> None:
    from vhostplug.lab import vms

    with ctx.progress.phase("virt-launchers: device, CNI ADD, sidecar OnDefineDomain", [ctx.paths.agent_log]) as ph:
        ph.doing("start libvirtd / virtlogd when not running")
        lv = vms.Libvirt()
        lv.start()
        for d in lv.started:
            ctx.state.add("libvirt_started", d)
        launchers = {who: _launcher(ctx, ph, lv, who) for who in ("a", "b")}
        ips = {who: launchers[who]["ip"] for who in launchers}
        for who, peer in (("a", "b"), ("b", "a")):
            launchers[who]["peer"] = ips[peer].split("/")[0]
        for who, launcher in launchers.items():
            _define_vm(ctx, ph, lv, who, launcher)
        ph.note = ", ".join(f"{lab['domain']}←{lab['device']}" for lab in launchers.values())
    consoles = {who: vms.Console(Path(lab["root"]) / "console.log") for who, lab in launchers.items()}
    with ctx.progress.phase(
        "VMs boot (TCG) and ping each other through OVS", [c.path for c in consoles.values()]
    ) as ph:
        t0 = time.monotonic()
        for launcher in launchers.values():
            ph.doing(f"virsh start {launcher['domain']}")
            lv.start_domain(launcher["domain"])
        for launcher in launchers.values():
            ph.doing(f"virsh domstate {launcher['domain']} (running once OVS connected)")
            lv.wait_state(launcher["domain"], "running", 60)
        for who, console in consoles.items():
            ph.doing(f"wait for the first ping reply on the serial console of {launchers[who]['domain']}")
            console.wait_for(r"VHP-PING-OK", 120)
            first = time.monotonic() - t0
            ph.doing(f"wait for the ping summary on the serial console of {launchers[who]['domain']}")
            m = console.wait_for(r"(\d+) packets transmitted, (\d+) packets received", 30)
            rtt = console.wait_for(r"round-trip min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms", 10)
            ctx.report["vms"].append(
                {
                    "name": launchers[who]["domain"],
                    "ip": launchers[who]["ip"],
                    "peer": launchers[who]["peer"],
                    "ping_transmitted": int(m.group(1)),
                    "ping_received": int(m.group(2)),
                    "rtt_min_ms": float(rtt.group(1)),
                    "rtt_avg_ms": float(rtt.group(2)),
                    "rtt_max_ms": float(rtt.group(3)),
                    "first_reply_s": round(first, 1),
                }
            )
        ph.doing("OVS interface statistics of the VMs' ports")
        ctx.report["ovs_ports"] += ctx.wait_ovs_counters(ctx.of_kind("vm"), 15)
        ph.note = ", ".join(f"{v['name']} {v['ping_received']}/{v['ping_transmitted']}" for v in ctx.report["vms"])


def _launcher(ctx: DemoContext, ph: Any, lv: Any, who: str) -> dict[str, Any]:
    """One virt-launcher pod: netns, device, CNI ADD, network-info file, sidecar process."""
    from vhostplug.lab import pods

    name = f"virt-launcher-vm-{who}"
    root = ctx.run_dir / "vm" / who
    root.mkdir(parents=True, exist_ok=True)
    netns = ctx.names.netns(f"vm{who}")
    ph.doing(f"ip netns add {netns} (virt-launcher pod sandbox)")
    ctx.state.add("pods", {"name": name, "netns": netns, "holder": None})
    pods.run(["ip", "netns", "add", netns], f"sandbox of {name}")
    device, _resp = ctx.allocate(ph, name)
    # the lab's virt-launcher compute container is the host itself (libvirtd runs there): the device folder's
    # "container path" is its host path, so the VM NAD sets containerSocketRoot to the socket root
    uid = str(uuid.uuid4())
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    devinfo = multus_devinfo(ctx.paths, VM_NAD, cid, device)
    conf = netconf(VM_NAD, ctx.paths, ctx.names.bridge("v"), device, devinfo, VM_SUBNET, str(ctx.paths.socket_root))
    att = CniCall("vm", name, uid, cid, str(pods.NETNS_DIR / netns), device, conf)
    ctx.attach(ph, att)
    status = network_status(VM_NAD, att.result, devinfo)[0]
    info = {"interfaces": [{"network": IFNAME, "deviceInfo": status["device-info"], "mac": status["mac"]}]}
    (root / "network-info").write_text(json.dumps(info))
    _traversable(ctx.paths.socket_root, root)
    hook = start_sidecar(ctx, ph, root)
    return {
        "root": str(root),
        "device": device,
        "domain": ctx.names.domain(f"vm-{who}"),
        "mac": status["mac"],
        "ip": att.result["ips"][0]["address"],
        "hook": str(hook),
    }


def start_sidecar(ctx: DemoContext, ph: Any, root: Path, wrap: Sequence[str] = ()) -> Path:
    """Our hook sidecar for the virt-launcher in ``root`` (``wrap``: e.g. an ``nsenter`` into its pod's mount
    namespace), recorded for cleanup; returns its hooks socket once the file is there."""
    hook = root / "hook.sock"
    argv = [
        *wrap,
        vhostplug_exe(),
        "kubevirt-sidecar",
        "--socket",
        str(hook),
        "--network-info",
        str(root / "network-info"),
        "--links-dir",
        str(root / "links"),
    ]
    ph.doing(" ".join(argv))
    with open(root / "sidecar.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, NETWORK_BINDING_PLUGIN_NAME="vhostuser", CONTAINER_NAME="hook-sidecar-0"),
            start_new_session=True,
        )
    ctx.state.add("sidecars", {"pid": proc.pid, "start": ProcRef.of(proc.pid).start, "socket": str(hook)})
    deadline = time.monotonic() + 20
    while not hook.is_socket():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the sidecar did not serve {hook}:\n{log_tail(root / 'sidecar.log')}")
        time.sleep(0.05)
    return hook


def _define_vm(ctx: DemoContext, ph: Any, lv: Any, who: str, launcher: dict[str, Any]) -> None:
    import grpc

    from vhostplug.kubevirt.hooks import v1alpha3_pb2, v1alpha3_pb2_grpc
    from vhostplug.lab import vms

    domain = launcher["domain"]
    root = Path(launcher["root"])
    cmdline = f"vhp.ip={launcher['ip']} vhp.peer={launcher['peer']} vhp.interval=0"
    base = vms.lab_domain_xml(domain, root / "console.log", cmdline)
    ph.doing(f"OnDefineDomain over gRPC at {launcher['hook']} (v1alpha3)")
    with grpc.insecure_channel(f"unix:{launcher['hook']}") as ch:
        res = v1alpha3_pb2_grpc.CallbacksStub(ch).OnDefineDomain(  # type: ignore[no-untyped-call]
            v1alpha3_pb2.OnDefineDomainParams(domainXML=base.encode(), vmi=_vmi_json(domain, launcher["mac"])),
            timeout=60,
            wait_for_ready=True,  # the hooks socket file exists a moment before the server listens
        )
    (root / "domain-from-sidecar.xml").write_bytes(res.domainXML)
    ph.doing(f"virsh define {root / (domain + '.xml')} (with the lab-only vectors=0 override)")
    ctx.state.add("domains", domain)
    lv.define(vms.add_lab_overrides(res.domainXML), root)


def _vmi_json(name: str, mac: str) -> bytes:
    """The VMI the sidecar receives: one interface bound to the vhostuser network binding."""
    return json.dumps(
        {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "domain": {
                    "devices": {"interfaces": [{"name": IFNAME, "binding": {"name": "vhostuser"}, "macAddress": mac}]}
                },
                "networks": [{"name": IFNAME, "multus": {"networkName": f"{NAMESPACE}/{VM_NAD}"}}],
            },
        }
    ).encode()


def _traversable(*paths: Path) -> None:
    """QEMU runs as libvirt-qemu: let it traverse (search only) the folders above its socket."""
    for path in paths:
        for p in [path, *path.parents]:
            if p == Path("/"):
                break
            st = p.stat()
            if st.st_uid == 0 and not st.st_mode & 0o001:
                os.chmod(p, (st.st_mode & 0o7777) | 0o001)
