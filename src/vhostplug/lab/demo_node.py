"""The demo's node phases: the lab stack comes up (OVS-DPDK, node agent, CNI shim) and the lab kubelet sees the
device plugin register its resource."""

from __future__ import annotations

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.multus import RESOURCE


def lab_up(ctx: DemoContext, hugepages: bool | None = None) -> None:
    from vhostplug.lab.stack import lab_up as stack_up

    with ctx.progress.phase(
        "start OVS-DPDK, node agent, CNI shim", [ctx.paths.ovs_dir / "ovs-vswitchd.log", ctx.paths.agent_log]
    ) as ph:
        ph.doing("vhostplug.lab.stack.lab_up (ovsdb-server, ovs-vswitchd-dpdk, vhostplug agent)")
        status = stack_up(ctx.run_dir, hugepages=hugepages)
        ctx.ovs_endpoint = f"unix:{status['ovsdb']}"
        ph.note = f"dpdk_initialized={status['dpdk_initialized']} agent pid {status['pid_agent']}"


def start_kubelet(ctx: DemoContext) -> None:
    from vhostplug.lab.kubelet import LabKubelet

    with ctx.progress.phase("lab kubelet: device plugin registers", [ctx.paths.agent_log]) as ph:
        ph.doing(f"LabKubelet({ctx.paths.device_plugin_dir}) and wait for {RESOURCE}")
        ctx.kubelet = LabKubelet(ctx.paths.device_plugin_dir)
        ctx.kubelet.start()
        ctx.kubelet.serve_pod_resources(ctx.paths.pod_resources_socket)
        devices = ctx.kubelet.wait_for(
            RESOURCE, lambda ds: len(ds) >= 4 and all(d.health == "Healthy" for d in ds), timeout=30
        )
        ph.note = f"{RESOURCE}: {len(devices)} healthy devices"


def stop_kubelet(ctx: DemoContext) -> None:
    if ctx.kubelet is not None:
        ctx.kubelet.stop()
        ctx.kubelet = None
