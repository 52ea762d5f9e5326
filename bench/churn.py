#!/usr/bin/env python3
"""Churn: ADD/DEL cycles through the real shim and agent on a private OVS-DPDK, sequential and with 8 workers, then
the agent's open fds, RSS and threads against their start, and what is left (OVS ports, files under the socket root,
the agent's attachment records). A leak shows as a count that grows with the cycles; figures are printed and written
to bench/results/churn.json. ``CHURN_CYCLES`` (default 1000) and ``CHURN_WORKERS`` (default 8) size a run.

Needs root; starts and stops its own private OVS-DPDK and agent.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent

CYCLES = int(os.environ.get("CHURN_CYCLES", "1000"))
WORKERS = int(os.environ.get("CHURN_WORKERS", "8"))
OUT = Path(__file__).resolve().parent / "results" / "churn.json"


def agent_footprint(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cycle(agent: AgentProc, cid: str) -> tuple[float, float]:
    conf = json.dumps(agent.netconf()).encode()
    add = agent.exec_shim(agent.cni_env("ADD", cid), conf)
    if add.code != 0:
        raise RuntimeError(f"ADD {cid} failed: {add.stdout!r} {add.stderr!r}")
    dele = agent.exec_shim(agent.cni_env("DEL", cid), conf)
    if dele.code != 0:
        raise RuntimeError(f"DEL {cid} failed: {dele.stdout!r} {dele.stderr!r}")
    return add.seconds, dele.seconds


def run_phase(agent: AgentProc, name: str, workers: int, cycles: int) -> dict[str, Any]:
    assert agent.proc is not None
    pid = agent.proc.pid
    cycle(agent, f"warm{name}")  # the agent's first ADD connects to OVSDB and makes the bridge
    before = agent_footprint(pid)
    samples: list[dict[str, int]] = [before]
    t0 = time.perf_counter()
    adds: list[float] = []
    dels: list[float] = []
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(cycle, agent, f"ch{name}{i:05d}") for i in range(cycles)]
        for i, fut in enumerate(futures):
            a, d = fut.result()
            adds.append(a)
            dels.append(d)
            if (i + 1) % max(1, cycles // 10) == 0:
                samples.append(agent_footprint(pid))
    wall = time.perf_counter() - t0
    time.sleep(1.0)  # let the relocator tick and worker threads idle
    after = agent_footprint(pid)
    records_dir = Path("/var/lib/vhostplug/attachments")
    left = {
        "ovs_ports": agent.our_ports(),
        "files": [p for p in agent.leftovers() if not p.startswith("vhu")],
        "records": sorted(p.name for p in records_dir.glob("*.json") if f"ch{name}" in p.read_text())
        if records_dir.exists()
        else [],
    }
    return {
        "workers": workers,
        "cycles": cycles,
        "wall_s": round(wall, 2),
        "cycles_per_s": round(cycles / wall, 1),
        "add_ms": {"p50": round(pct(adds, 50) * 1000, 1), "p99": round(pct(adds, 99) * 1000, 1)},
        "del_ms": {"p50": round(pct(dels, 50) * 1000, 1), "p99": round(pct(dels, 99) * 1000, 1)},
        "agent_before": before,
        "agent_after": after,
        "rss_kib_samples": [s["rss_kib"] for s in samples],
        "fds_samples": [s["fds"] for s in samples],
        "rss_growth_kib_2nd_half": samples[-1]["rss_kib"] - samples[len(samples) // 2]["rss_kib"],
        "left_behind": left,
        "leak": bool(left["ovs_ports"] or left["files"] or left["records"]) or after["fds"] > before["fds"],
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench/churn.py needs root (private OVS-DPDK)", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-churn-", dir="/tmp"))
    ovs = PrivateOvs(run_dir / "ovs")
    ovs.start()
    agent = None
    try:
        agent = make_agent(ovs)
        results: dict[str, Any] = {
            "host": {"cpus": os.cpu_count(), "note": "ovs-vswitchd PMD on core 1; shim, agent, OVSDB share the rest"},
            "phases": {},
        }
        for name, workers in (("seq", 1), (f"w{WORKERS}", WORKERS)):
            phase = run_phase(agent, name, workers, CYCLES)
            results["phases"][name] = phase
            print(
                f"{name:>4}: {CYCLES} ADD/DEL cycles, {workers} workers, {phase['wall_s']} s "
                f"({phase['cycles_per_s']}/s); ADD p50 {phase['add_ms']['p50']} ms p99 {phase['add_ms']['p99']} ms; "
                f"agent fds {phase['agent_before']['fds']} -> {phase['agent_after']['fds']}, "
                f"RSS {phase['agent_before']['rss_kib']} -> {phase['agent_after']['rss_kib']} KiB, "
                f"threads {phase['agent_before']['threads']} -> {phase['agent_after']['threads']}; "
                f"left: {sum(len(v) for v in phase['left_behind'].values())}"
            )
        results["leak"] = any(p["leak"] for p in results["phases"].values())
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        print(
            f"wrote {OUT}; median ADD {statistics.median([p['add_ms']['p50'] for p in results['phases'].values()])} ms"
        )
        return 1 if results["leak"] else 0
    finally:
        if agent is not None:
            stop_agent(agent)
        ovs.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
