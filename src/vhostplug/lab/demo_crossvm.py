"""The two-node demo's VM phases: a VM on each node pinging the other across the VM uplink, then one VM live-migrating
from node a to node b while it pings a testpmd pod on node a (:mod:`vhostplug.lab.migration.crossnode`).

Each VM is a virt-launcher pod made by its own node's kubelet (device plugin ``Allocate``) and agent (CNI ADD through
that node's shim), with a lab QEMU (TCG) in its own mount namespace; each node hands out VM addresses from its own
part of the subnet. The QEMUs' pids go into the node's demo state (as sidecars are) so a crashed demo's cleanup ends
them.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.migration.crossnode import FAST_ANNOUNCE, VM_SUBNET, CrossNodeMigration, node_range
from vhostplug.lab.migration.launcher import LaunchedPod, NodeQemu
from vhostplug.lab.pods import ProcRef


def _remember(ctx: DemoContext, vm: NodeQemu) -> None:
    if vm.pid is not None:
        ctx.state.add("sidecars", {"pid": vm.pid, "start": ProcRef.of(vm.pid).start, "socket": str(vm.qmp_socket)})


def vm_ping(a: DemoContext, b: DemoContext) -> str:
    """One VM per node, each pinging the other's address (3 pings once it answers); ``"received/sent"`` summed."""
    from vhostplug.lab.vms import Console

    root = Path(tempfile.mkdtemp(prefix="vhp-x", dir="/tmp"))  # short: socket paths
    tag = uuid.uuid4().hex[:5]
    pods = [LaunchedPod(ctx, f"xvm-{n}-{tag}", VM_SUBNET, ip_range=node_range(ctx)) for n, ctx in (("a", a), ("b", b))]
    vms: list[NodeQemu] = []
    try:
        with a.progress.phase("VMs on each node ping each other across the uplink", [a.paths.agent_log]) as ph:
            for pod in pods:
                pod.create()
            for pod, peer in ((pods[0], pods[1]), (pods[1], pods[0])):
                ph.doing(f"QEMU (TCG) for pod {pod.name} on {pod.node}, pinging {peer.ip}")
                cmdline = f"vhp.ip={pod.ip} vhp.peer={peer.ip.split('/')[0]} vhp.interval=0"
                key = pod.name.split("-")[1]
                vm = NodeQemu(f"vhp-{pod.name}", root / key, root / f"l{key}", pod.mac, cmdline, socket=pod.socket)
                vms.append(vm)
                vm.start()
                _remember(pod.ctx, vm)
            sent = received = 0
            for vm in vms:
                ph.doing(f"ping summary on the serial console of {vm.name}")
                m = Console(vm.console_log).wait_for(r"(\d+) packets transmitted, (\d+) packets received", 180)
                sent, received = sent + int(m.group(1)), received + int(m.group(2))
            ph.note = f"{received}/{sent} replies between {pods[0].ip} ({a.run_dir.name}) and {pods[1].ip} " + (
                f"({b.run_dir.name})"
            )
        return f"{received}/{sent}"
    finally:
        for vm in vms:
            vm.stop()
        for pod in pods:
            pod.delete()
        shutil.rmtree(root, ignore_errors=True)


def migration(a: DemoContext, b: DemoContext) -> dict[str, Any]:
    """The VM migrates from node a to node b, pinging a testpmd pod on node a every 20 ms; the gap and QEMU's downtime."""
    root = Path(tempfile.mkdtemp(prefix="vhp-m", dir="/tmp"))
    mig = CrossNodeMigration(
        a, b, a, root, uuid.uuid4().hex[:6], interval=0.02, announce=FAST_ANNOUNCE, guest_announce=False
    )
    try:
        with a.progress.phase(
            "live migration node-a → node-b while pinging", [a.paths.agent_log, b.paths.agent_log]
        ) as ph:
            ph.doing("peer pod, source pod and VM on node-a; target pod and QEMU on node-b")
            mig.boot()
            for ctx, vm in ((a, mig.vms["src"]), (b, mig.vms["dst"])):
                _remember(ctx, vm)
            ph.doing("QMP migrate over a unix socket, then the source pod's DEL on node-a")
            run = mig.run(f"unix:{root}/mig.sock")
            ph.note = f"gap {run['gap_ms']:.0f} ms, QEMU downtime {run['qemu_downtime_ms']} ms"
        return {k: run[k] for k in ("source_node", "target_node", "gap_ms", "qemu_downtime_ms")}
    finally:
        mig.close()
        shutil.rmtree(root, ignore_errors=True)
