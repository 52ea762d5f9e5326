#!/usr/bin/env python3
"""What one lab node costs per pod: BENCH_PODS (default 20) virt-launcher-style pods made and removed one after the
other on a fresh one-node lab (kubelet ``Allocate`` of the device plugin, CNI ADD and DEL through the installed shim
and the agent, as vhostplug.lab.migration.launcher does), measuring per ADD and per DEL the OVSDB transactions
committed (records appended to the node's standalone ``conf.db`` log) and the wall time, and around the whole loop
the agent's CPU time (utime + stime) and RSS, ovs-vswitchd's and ovsdb-server's RSS. For docs/scale.md.

Writes bench/results/node_cost.json. Needs root; starts and stops its own lab in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from vhostplug.lab import cluster
from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_node import start_kubelet, stop_kubelet
from vhostplug.lab.migration.crossnode import VM_SUBNET, node_range
from vhostplug.lab.migration.launcher import LaunchedPod
from vhostplug.lab.report import Progress

PODS = int(os.environ.get("BENCH_PODS", "20"))
OUT = Path(__file__).resolve().parent / "results" / "node_cost.json"
TICK = os.sysconf("SC_CLK_TCK")


def _records(db: Path) -> int:
    return db.read_bytes().count(b"OVSDB JSON ")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1000, 1)
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _pid(path: Path) -> int:
    return int(path.read_text().strip())


def main() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-nc", dir="/tmp"))
    ctx: DemoContext | None = None
    adds: list[dict[str, float]] = []
    try:
        cluster.cluster_up(run_dir, nodes=1)
        ctx = DemoContext(run_dir, Progress(Console(quiet=True)))
        start_kubelet(ctx)
        ctx.ovs_endpoint = f"unix:{ctx.paths.ovs_dir / 'db.sock'}"
        db = ctx.paths.ovs_dir / "conf.db"
        agent = _pid(ctx.paths.run_dir / "agent.pid")
        vswitchd = _pid(ctx.paths.ovs_dir / "ovs-vswitchd.pid")
        ovsdb = _pid(ctx.paths.ovs_dir / "ovsdb-server.pid")
        before: dict[str, Any] = {
            "agent_rss_mb": _rss_mb(agent),
            "agent_cpu_s": _cpu_s(agent),
            "vswitchd_rss_mb": _rss_mb(vswitchd),
            "ovsdb_rss_mb": _rss_mb(ovsdb),
        }
        for i in range(PODS):
            pod = LaunchedPod(ctx, f"cost-{i}", VM_SUBNET, ip_range=node_range(ctx))
            r0, t0 = _records(db), time.monotonic()
            pod.create()
            r1, t1 = _records(db), time.monotonic()
            pod.delete()
            r2, t2 = _records(db), time.monotonic()
            adds.append(
                {"add_txns": r1 - r0, "add_ms": (t1 - t0) * 1000, "del_txns": r2 - r1, "del_ms": (t2 - t1) * 1000}
            )
        after = {
            "agent_rss_mb": _rss_mb(agent),
            "agent_cpu_s": _cpu_s(agent),
            "vswitchd_rss_mb": _rss_mb(vswitchd),
            "ovsdb_rss_mb": _rss_mb(ovsdb),
        }
    finally:
        if ctx is not None:
            stop_kubelet(ctx)
        cluster.cluster_down(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_avg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "pods": PODS,
        "per_pod": adds,
        "add_txns_p50": statistics.median(a["add_txns"] for a in adds),
        "del_txns_p50": statistics.median(a["del_txns"] for a in adds),
        "add_ms_p50": round(statistics.median(a["add_ms"] for a in adds), 1),
        "del_ms_p50": round(statistics.median(a["del_ms"] for a in adds), 1),
        "agent_cpu_ms_per_add_del": round((after["agent_cpu_s"] - before["agent_cpu_s"]) * 1000 / PODS, 1),
        "before": before,
        "after": after,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_pod"}, indent=1))


if __name__ == "__main__":
    main()
