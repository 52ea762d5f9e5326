#!/usr/bin/env python3
"""Metrics scrape cost: the agent's /metrics with 100 and then 500 attachments (ADD through the real shim, with the
pods' CNI_ARGS, on a private OVS-DPDK), scraped ``SCRAPES`` times each: wall time of a scrape as Prometheus sees it,
the agent's own OVSDB read (``vhostplug_attachment_stats_seconds``), the body size and the series count; the
agent's CPU time per scrape. Figures are printed and written to bench/results/metrics_scrape.json with the time, the
machine's load and its core layout. ``SCRAPES`` (default 20) sizes a run.

Needs root; starts and stops its own private OVS-DPDK and agent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent
from vhostplug_testsupport.containerd_node import free_port

SCRAPES = int(os.environ.get("SCRAPES", "20"))
SIZES = (100, 500)
OUT = Path(__file__).resolve().parent / "results" / "metrics_scrape.json"


def add(agent: AgentProc, i: int) -> None:
    cid = f"ms{i:05d}"
    env = agent.cni_env("ADD", cid, CNI_ARGS=f"K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{i:05d}")
    r = agent.exec_shim(env, json.dumps(agent.netconf()).encode())
    if r.code != 0:
        raise RuntimeError(f"ADD {cid} failed: {r.stdout!r}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        body = resp.read().decode()
    return time.perf_counter() - t0, body


def measure(agent: AgentProc, port: int, ports: int) -> dict[str, Any]:
    assert agent.proc is not None
    scrape(port)  # warm
    walls, reads = [], []
    cpu0 = cpu_seconds(agent.proc.pid)
    body = ""
    for _ in range(SCRAPES):
        wall, body = scrape(port)
        walls.append(wall)
        m = re.search(r"^vhostplug_attachment_stats_seconds ([0-9.e+-]+)$", body, re.M)
        reads.append(float(m.group(1)) if m else float("nan"))
    cpu = (cpu_seconds(agent.proc.pid) - cpu0) / SCRAPES
    series = len(re.findall(r'^vhostplug_attachment_\w+\{.*pod="pod-', body, re.M))
    return {
        "attachments": ports,
        "scrapes": SCRAPES,
        "wall_ms": {"median": round(statistics.median(walls) * 1000, 1), "max": round(max(walls) * 1000, 1)},
        "ovsdb_read_ms": {"median": round(statistics.median(reads) * 1000, 1), "max": round(max(reads) * 1000, 1)},
        "agent_cpu_ms_per_scrape": round(cpu * 1000, 1),
        "body_kib": round(len(body.encode()) / 1024, 1),
        "attachment_series": series,
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench/metrics_scrape.py needs root (private OVS-DPDK)", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-msc-", dir="/tmp"))
    ovs = PrivateOvs(run_dir / "ovs")
    ovs.start()
    agent = None
    try:
        port = free_port()
        agent = make_agent(ovs, metricsPort=port)
        results: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {
                "cpus": os.cpu_count(),
                "loadavg_start": os.getloadavg(),
                "note": "ovs-vswitchd PMD on core 1; agent, OVSDB and the scraper share the rest",
            },
            "runs": [],
        }
        made = 0
        for size in SIZES:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: add(agent, i), range(made, size)))  # type: ignore[arg-type]
            made = size
            run = measure(agent, port, size)
            run["loadavg"] = os.getloadavg()
            results["runs"].append(run)
            print(
                f"{size} attachments: scrape median {run['wall_ms']['median']} ms (max {run['wall_ms']['max']}), "
                f"OVSDB read {run['ovsdb_read_ms']['median']} ms, agent CPU {run['agent_cpu_ms_per_scrape']} ms, "
                f"{run['body_kib']} KiB, {run['attachment_series']} series; load {run['loadavg'][0]:.1f}"
            )
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {OUT}")
        return 0
    finally:
        if agent is not None:
            stop_agent(agent)
        ovs.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
