#!/usr/bin/env python3
"""CNI ADD/DEL latency: vhostplug (exec of the stdlib shim -> agent -> one OVSDB transaction) side by side with the
`ovs-vsctl` command sequence the intel userspace CNI runs for the same port, at 10, 100 and 1000 existing ports.

Both ADD paths wait for ovs-vswitchd to apply the change (ovs-vsctl does so by default); vhostplug's DEL does not
(once the row is gone the port is gone). A third column times ovs-vswitchd alone: a raw OVSDB insert of the same port
answered by an OVSDB ``wait`` the moment the ofport is written, the floor under any client's ADD. Writes
bench/results/cni_latency.json and prints a table. Needs root; starts and stops its own private OVS-DPDK and agent.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab.ovsdb import add_vhost_client_ports
from vhostplug.lab.stack import LabPaths, lab_bridges, lab_down, lab_up

SCALES = (10, 100, 1000)
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "40"))
BRIDGE = "br-bench"
OUT = Path(__file__).resolve().parent / "results" / "cni_latency.json"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def fill_ports(endpoint: str, want: int, have: int, folder: Path) -> None:
    """Add filler dpdkvhostuserclient ports in batches of raw OVSDB transactions (no socket: they stay down)."""
    batch = 100
    for start in range(have, want, batch):
        names = (f"fill{i:05d}" for i in range(start, min(want, start + batch)))
        add_vhost_client_ports(endpoint, BRIDGE, {name: str(folder / name) for name in names})
    # wait until vswitchd has them all
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rows = ovsdb_rpc.select(endpoint, "Interface", [["type", "==", "dpdkvhostuserclient"]], ["ofport"])
        if len(rows) >= want and all(isinstance(r["ofport"], int) and r["ofport"] > 0 for r in rows):
            return
        time.sleep(0.5)
    raise RuntimeError("vswitchd did not take the filler ports in time")


def run_shim(paths: LabPaths, command: str, cid: str, conf: dict[str, Any]) -> tuple[float, float]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_IFNAME": "net1",
        "CNI_NETNS": "/var/run/netns/bench",
        "CNI_PATH": str(paths.cni_bin_dir),
        "VHOSTPLUG_SHIM_TIMING": "1",
    }
    t0 = time.perf_counter()
    proc = subprocess.run([str(paths.cni_bin)], input=json.dumps(conf).encode(), env=env, capture_output=True)
    whole = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    agent_ms = float(proc.stderr.decode().strip().rsplit("=", 1)[1])
    return whole, agent_ms


def run_vsctl(db: str, command: str, port: str, sock: str) -> float:
    base = ["ovs-vsctl", f"--db=unix:{db}", "--timeout=30"]
    t0 = time.perf_counter()
    if command == "ADD":
        subprocess.run(
            [
                *base,
                "add-port",
                BRIDGE,
                port,
                "--",
                "set",
                "Interface",
                port,
                "type=dpdkvhostuserclient",
                f"options:vhost-server-path={sock}",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*base, "--bare", "--columns=mac", "find", "port", f"name={port}"], check=True, capture_output=True
        )
    else:
        subprocess.run([*base, "del-port", port], check=True, capture_output=True)
    return (time.perf_counter() - t0) * 1000


def run_floor(endpoint: str, port: str, sock: str) -> float:
    """ovs-vswitchd's own share: one raw OVSDB insert of the same port, then an OVSDB ``wait`` operation that the
    server answers the moment ovs-vswitchd writes the ofport. No client logic at all; the port is removed after."""
    t0 = time.perf_counter()
    add_vhost_client_ports(endpoint, BRIDGE, {port: sock})
    ovsdb_rpc.transact(
        endpoint,
        [
            {
                "op": "wait",
                "timeout": 30000,
                "table": "Interface",
                "where": [["name", "==", port]],
                "columns": ["ofport"],
                "until": "!=",
                "rows": [{"ofport": ["set", []]}],
            }
        ],
        timeout=35,
    )
    took = (time.perf_counter() - t0) * 1000
    remove_port(endpoint, port)
    return took


def remove_port(endpoint: str, port: str) -> None:
    """Take the port off its bridge and wait until ovs-vswitchd has applied that (the next sample starts quiet)."""
    rows = ovsdb_rpc.select(endpoint, "Port", [["name", "==", port]], ["_uuid"])
    ops: list[dict[str, Any]] = [
        {
            "op": "mutate",
            "table": "Bridge",
            "where": [["name", "==", BRIDGE]],
            "mutations": [["ports", "delete", ["set", [r["_uuid"] for r in rows]]]],
        },
        {"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["next_cfg", "+=", 1]]},
        {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]},
    ]
    target = ovsdb_rpc.transact(endpoint, ops)[-1]["rows"][0]["next_cfg"]
    ovsdb_rpc.transact(
        endpoint,
        [
            {
                "op": "wait",
                "timeout": 30000,
                "table": "Open_vSwitch",
                "where": [["cur_cfg", ">=", target]],
                "columns": ["cur_cfg"],
                "until": "!=",
                "rows": [],
            }
        ],
        timeout=35,
    )


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 50), 3),
        "p99": round(pct(values, 99), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench/cni_latency.py needs root (it runs a private OVS-DPDK)", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-bench-", dir="/tmp"))
    results: dict[str, Any] = {"samples_per_point": SAMPLES, "scales": {}}
    try:
        status = lab_up(run_dir)
        paths = LabPaths(run_dir)
        global BRIDGE
        BRIDGE = lab_bridges(paths)[0]  # the lab agent's node policy allows only the lab's bridges
        endpoint = f"unix:{status['ovsdb']}"
        folder = run_dir / "fill"
        folder.mkdir()
        conf = {
            "cniVersion": "1.1.0",
            "name": "bench",
            "type": "vhostplug",
            "bridge": BRIDGE,
            "agentSocket": str(paths.agent_socket),
            "socketRoot": str(paths.socket_root),
        }
        # warm up (creates the bridge)
        run_shim(paths, "ADD", "warmup", conf)
        run_shim(paths, "DEL", "warmup", conf)
        have = 0
        for scale in SCALES:
            fill_ports(endpoint, scale, have, folder)
            have = scale
            ours_add, ours_add_agent, ours_del, ours_del_agent, vs_add, vs_del, floor = [], [], [], [], [], [], []
            for i in range(SAMPLES):
                cid = f"b{scale}x{i}"
                w, a = run_shim(paths, "ADD", cid, conf)
                ours_add.append(w)
                ours_add_agent.append(a)
                port = f"vsc{scale}x{i}"
                vs_add.append(run_vsctl(status["ovsdb"], "ADD", port, str(folder / port)))
                w, a = run_shim(paths, "DEL", cid, conf)
                ours_del.append(w)
                ours_del_agent.append(a)
                vs_del.append(run_vsctl(status["ovsdb"], "DEL", port, ""))
                raw = f"raw{scale}x{i}"
                floor.append(run_floor(endpoint, raw, str(folder / raw)))
            point = {
                "vhostplug_add_ms": summary(ours_add),
                "vhostplug_add_agent_ms": summary(ours_add_agent),
                "vhostplug_del_ms": summary(ours_del),
                "vhostplug_del_agent_ms": summary(ours_del_agent),
                "ovs_vsctl_add_ms": summary(vs_add),
                "ovs_vsctl_del_ms": summary(vs_del),
                "ovs_vswitchd_floor_add_ms": summary(floor),
            }
            point["add_speedup_p50"] = round(point["ovs_vsctl_add_ms"]["p50"] / point["vhostplug_add_ms"]["p50"], 2)
            point["del_speedup_p50"] = round(point["ovs_vsctl_del_ms"]["p50"] / point["vhostplug_del_ms"]["p50"], 2)
            results["scales"][str(scale)] = point
            print(
                f"{scale:5d} ports  ADD vhostplug p50 {point['vhostplug_add_ms']['p50']:6.2f} ms "
                f"(agent {point['vhostplug_add_agent_ms']['p50']:5.2f}) p99 {point['vhostplug_add_ms']['p99']:6.2f} | "
                f"ovs-vsctl p50 {point['ovs_vsctl_add_ms']['p50']:6.2f} p99 {point['ovs_vsctl_add_ms']['p99']:6.2f} "
                f"-> {point['add_speedup_p50']}x | DEL vhostplug p50 {point['vhostplug_del_ms']['p50']:6.2f} "
                f"(agent {point['vhostplug_del_agent_ms']['p50']:5.2f}) ovs-vsctl p50 {point['ovs_vsctl_del_ms']['p50']:6.2f} "
                f"| ovs-vswitchd alone (raw insert -> ofport) p50 {point['ovs_vswitchd_floor_add_ms']['p50']:6.2f}",
                flush=True,
            )
    finally:
        lab_down(run_dir)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
