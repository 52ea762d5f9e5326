"""The two-node demo's cross-node phase: one testpmd pod on each node, each made by its own node's kubelet, agent
and OVS-DPDK, sending ``txonly`` → ``rxonly`` to the other across the uplink, one direction after the other; the
received rate per direction in Mpps with the core layout (both nodes' PMDs share core 1, both testpmds core 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_pods import create_pod
from vhostplug.lab.demo_traffic import (
    APP_LCORES,
    FRAME_BYTES,
    RING,
    TRAFFIC_SECONDS,
    WARMUP_SECONDS,
    cpu_layout,
    start_testpmd,
)
from vhostplug.lab.rate import measure

if TYPE_CHECKING:
    from vhostplug.lab.testpmd import Testpmd

#: one pod per node; the last letter names the pod's netns and DPDK prefix on its node (not a/b: the same-node pods)
CROSS_PODS = ("cross-x", "cross-y")


def run_cross_node(a: DemoContext, b: DemoContext) -> dict[str, Any]:
    """Pods ``cross-x`` on node ``a`` and ``cross-y`` on node ``b``; returns the ``cross_node`` traffic figures."""
    from vhostplug.lab.ovs import OvsConfig

    x, y = CROSS_PODS
    with a.progress.phase(
        "cross-node pods: testpmd on each node, through the uplink", [a.paths.agent_log, b.paths.agent_log]
    ) as ph:
        from vhostplug.lab import pods as lab_pods

        ph.doing("mount points for the pods' private tmpfs")
        for d in lab_pods.ensure_host_dirs(lab_pods.POD_TMPFS):  # as the one-node demo: made here, removed at down
            a.state.add("host_dirs", d)
        create_pod(a, ph, x)
        create_pod(b, ph, y)
        tps: dict[str, Testpmd] = {}
        try:
            pods = [start_testpmd(a, ph, x, tps), start_testpmd(b, ph, y, tps)]
            for name, tp in tps.items():
                ph.doing(f"testpmd link up in pod {name}")
                tp.wait_link_up(0, timeout=45)
            flows = []
            for s, r in ((x, y), (y, x)):
                ph.doing(f"{r}: rxonly; {s}: txonly {FRAME_BYTES}-byte frames, across the uplink")
                flows.append(measure(tps[s], tps[r], FRAME_BYTES, TRAFFIC_SECONDS, WARMUP_SECONDS, (s, r)))
        finally:
            for tp in tps.values():
                tp.stop()
        layout = cpu_layout(OvsConfig().pmd_cpu_mask, APP_LCORES)
        layout["text"] = f"both nodes' OVS PMDs on core 1; {layout['text'].split('; ', 1)[1]}"
        ph.note = ", ".join(f"{f.sender}→{f.receiver} {f.mpps:.2f} Mpps" for f in flows) + f" ({layout['text']})"
        return {
            "mpps_a_to_b": round(flows[0].mpps, 3),
            "mpps_b_to_a": round(flows[1].mpps, 3),
            "pods": [{**p, "node": ctx.run_dir.name} for p, ctx in zip(pods, (a, b), strict=True)],
            "method": f"testpmd txonly → rxonly, {FRAME_BYTES}-byte frames, {TRAFFIC_SECONDS:g} s per direction "
            f"after {WARMUP_SECONDS:g} s warm-up, rings of {RING} descriptors, across a veth uplink (DPDK af_packet "
            "ports polled by each node's PMD)",
            "cpu_layout": layout,
            "flows": [f.to_json() for f in flows],
        }
