"""The demo's traffic phase: DPDK testpmd in each pod, on the ``--vdev`` ``vhostplug podinfo`` prints there, sends
``txonly`` → ``rxonly`` through OVS-DPDK for a fixed time, one direction after the other, and the received rate is
reported in Mpps with the core layout.

Both testpmds share one core while OVS's PMD polls the other. Two busy pollers on one core each run for a scheduler
time slice, so a receiver drains at most one ring per slice: with the default 256 descriptors that caps any path at
tens of kpps. The pods' rings are therefore :data:`RING` descriptors (virtio_user ``queue_size``), enough to hold a
slice's worth of packets (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.rate import Flow, measure

if TYPE_CHECKING:
    from vhostplug.lab.testpmd import Testpmd

ENV_TESTPMD = "VHOSTPLUG_DEMO_TESTPMD"
TRAFFIC_SECONDS = 4.0
WARMUP_SECONDS = 1.0
FRAME_BYTES = 64
RING = 16384
APP_LCORES = "0@0,1@0"


def vhostplug_exe() -> str:
    return str(Path(sys.executable).with_name("vhostplug"))


def cpu_layout(pmd_cpu_mask: str, app_lcores: str = APP_LCORES) -> dict[str, Any]:
    """Which core polls what: OVS's PMD cores (from its mask) and the apps' lcores."""
    mask = int(pmd_cpu_mask, 16)
    pmd = [c for c in range(64) if mask >> c & 1]
    app = sorted({int(x.split("@")[1]) for x in app_lcores.split(",")})
    return {
        "cpus": os.cpu_count(),
        "ovs_pmd_cores": pmd,
        "app_cores": app,
        "text": f"OVS PMD on core {','.join(map(str, pmd))}; each testpmd (main + forwarding lcore, "
        f"--lcores={app_lcores}) on core {','.join(map(str, app))}",
    }


def app_memory_mb(ring: int) -> int:
    """testpmd's ``-m``: 4 x ``ring`` mbufs of ~2.3 KB plus the rings (256 MB holds up to 4096 descriptors)."""
    return 256 if ring <= 4096 else 1024


def with_ring(vdev: str, ring: int = RING) -> str:
    return vdev if "queue_size=" in vdev else f"{vdev},queue_size={ring}"


def start_testpmd(ctx: DemoContext, ph: Any, name: str, tps: dict[str, Testpmd]) -> dict[str, Any]:
    """testpmd in pod ``name`` of ``ctx``'s node on the ``--vdev`` podinfo prints there; put in ``tps`` before it
    starts (so the caller stops it even when the start fails half-way). Returns the pod's report entry."""
    from vhostplug.lab.testpmd import TESTPMD, Testpmd

    pod = ctx.pods[name]
    ph.doing(f"vhostplug podinfo --dpdk-args (in pod {name})")
    out = pod.exec(vhostplug_exe(), "podinfo", "--dpdk-args", "--wait", "10", what="podinfo")
    vdevs = [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("--vdev ")]
    if not vdevs:
        raise RuntimeError(f"podinfo printed no --vdev in pod {name}: {out!r}")
    prefix = ctx.names.prefix(name[-1])
    ctx.state.add("testpmd_prefixes", prefix)
    tp = Testpmd(
        [with_ring(v) for v in vdevs],
        prefix,
        wrap=pod.nsenter(),
        lcores=APP_LCORES,
        ring=RING,
        mbufs=4 * RING,
        memory_mb=app_memory_mb(RING),
    )
    tp.argv[tp.argv.index(TESTPMD)] = os.environ.get(ENV_TESTPMD, TESTPMD)
    ph.doing(" ".join(tp.argv))
    tps[name] = tp
    tp.start(timeout=60)
    return {"name": name, "vdevs": vdevs, "file_prefix": prefix}


def run_testpmd(ctx: DemoContext) -> None:
    from vhostplug.lab.ovs import OvsConfig

    with ctx.progress.phase("testpmd in the pods: traffic through OVS", [ctx.paths.agent_log]) as ph:
        tps: dict[str, Testpmd] = {}
        try:
            for name in ctx.pods:
                ctx.report["pods"].append(start_testpmd(ctx, ph, name, tps))
            for name, tp in tps.items():
                ph.doing(f"testpmd link up in pod {name} (OVS connects to the socket testpmd serves)")
                tp.wait_link_up(0, timeout=45)
            (a, tp_a), (b, tp_b) = tps.items()
            flows: list[Flow] = []
            for (s, tp_s), (r, tp_r) in (((a, tp_a), (b, tp_b)), ((b, tp_b), (a, tp_a))):
                ph.doing(f"{r}: set fwd rxonly, start; {s}: set fwd txonly, set txpkts {FRAME_BYTES - 4}, start")
                flows.append(measure(tp_s, tp_r, FRAME_BYTES, TRAFFIC_SECONDS, WARMUP_SECONDS, (s, r)))
            stats = {n: tp.stats()[0] for n, tp in tps.items()}
            for entry in ctx.report["pods"]:
                n = entry["name"]
                sent = next(f for f in flows if f.sender == n)
                got = next(f for f in flows if f.receiver == n)
                entry.update(
                    role=f"txonly → {sent.receiver}, then rxonly",
                    rx_packets=stats[n].rx_packets,
                    tx_packets=stats[n].tx_packets,
                    rx_pps=int(got.received / got.seconds),
                    tx_pps=int(sent.sent / sent.seconds),
                    rx_mpps=round(got.mpps, 3),
                )
            layout = cpu_layout(OvsConfig().pmd_cpu_mask)
            ctx.report["traffic"] = {
                "method": f"testpmd txonly → rxonly, {FRAME_BYTES}-byte frames, {TRAFFIC_SECONDS:g} s per direction "
                f"after {WARMUP_SECONDS:g} s warm-up, rings of {RING} descriptors",
                "cpu_layout": layout,
                "flows": [f.to_json() for f in flows],
            }
            ph.doing("OVS interface statistics of the pods' ports (while the apps hold their sockets)")
            ctx.report["ovs_ports"] += ctx.wait_ovs_counters(ctx.of_kind("pod"))
            ph.note = ", ".join(f"{f.sender}→{f.receiver} {f.mpps:.2f} Mpps" for f in flows) + f" ({layout['text']})"
        finally:
            for tp in tps.values():
                tp.stop()
