#!/usr/bin/env python3
"""DRA NodePrepareResources / NodeUnprepareResources latency through the real protocol, beside CNI ADD of the same port.

On a lab (private OVS-DPDK, the stand-in kube-apiserver, the agent with its DRA kubelet plugin) this bench acts as
kubelet: the plugin watcher's handshake, then for every sample it creates ResourceClaims allocated from the slots the
agent published (untimed: the scheduler's part), calls NodePrepareResources with 1 or 8 claims (timed: the agent reads
each claim, makes its folder and OVS port, waits for ovs-vswitchd's ofport, writes CDI spec, metadata and claim
status) and NodeUnprepareResources (timed). Interleaved with each sample: a CNI ADD+DEL of the same kind of port
through the installed shim (bench/cni_latency.py's runner) and ovs-vswitchd's own floor (raw insert -> ofport). Then
Prepare+Unprepare x1000 of one claim, with the agent's open fds and RSS sampled every 100 and everything checked gone
at the end. Writes bench/results/dra_prepare.json. Needs root; starts and stops its own lab.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cni_latency

from vhostplug import ovsvhost
from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.dra.config import (
    DRIVER_NAME,
    ApiServerConfig,
)
from vhostplug.dra.kubeapi import RESOURCE_API, KubeApi
from vhostplug.lab.drakubelet import Claim, DraKubelet
from vhostplug.lab.stack import LabPaths, lab_bridges, lab_down, lab_up
from vhostplug_testsupport import draobjects

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "40"))
CHURN = int(os.environ.get("BENCH_CHURN", "1000"))
NAMESPACE = "bench"
OUT = Path(__file__).resolve().parent / "results" / "dra_prepare.json"


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(cni_latency.pct(values, 50), 3), "p99": round(cni_latency.pct(values, 99), 3),
            "mean": round(statistics.fmean(values), 3), "n": len(values)}  # fmt: skip


def create_claim(api: KubeApi, node: str, device: str, pod_claim: str) -> Claim:
    """What the API server and the scheduler do before kubelet calls the driver: the claim, then its allocation."""
    name = f"c-{uuid.uuid4().hex[:10]}"
    obj = draobjects.claim(name, node, [("vhost", device)], namespace=NAMESPACE, pod_claim_name=pod_claim,
                           params={"mtu": 1500})  # fmt: skip
    status = obj.pop("status")
    obj["metadata"].pop("uid")
    made = api.request("POST", f"{RESOURCE_API}/namespaces/{NAMESPACE}/resourceclaims", obj)
    made["status"] = status
    api.replace_claim_status(made)
    return Claim(NAMESPACE, name, made["metadata"]["uid"])


def delete_claim(api: KubeApi, c: Claim) -> None:
    api.request("DELETE", api.claim_path(c.namespace, c.name))


def agent_usage(pid: int) -> tuple[int, float]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))  # fmt: skip
    return fds, round(rss / 1024, 1)


def leftovers(paths: LabPaths, status: dict[str, Any], dp: OvsDataplane) -> dict[str, list[str]]:
    return {
        "ports": [p.name for p in dp.list_ports() if ovsvhost.ID_DRA_CLAIM in p.external_ids],
        "folders": [str(p) for p in Path(status["socket_root"]).glob("dra-*")],
        "cdi_specs": [str(p) for p in Path(status["cdi_dir"]).glob(f"{DRIVER_NAME}_*")],
        "metadata": [str(p) for p in (paths.plugins_dir / DRIVER_NAME / "dra-device-metadata").glob("*")],
        "claim_records": [str(p) for p in (paths.run_dir / "attachments" / "dra").glob("*.json")],
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench/dra_prepare.py needs root (it runs a private OVS-DPDK)", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-drab-", dir="/tmp"))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: dict[str, Any] = {
        "started": started,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "layout": "OVS PMD on core 1 (the lab's private OVS-DPDK, one PMD core, no hugepages); the agent, the stand-in "
        "kube-apiserver and this client unpinned on both cores",
        "samples_per_point": SAMPLES,
    }
    try:
        status = lab_up(run_dir)
        paths = LabPaths(run_dir)
        bridge = lab_bridges(paths)[0]
        cni_latency.BRIDGE = bridge
        endpoint = f"unix:{status['ovsdb']}"
        node = status["node_name"]
        api = KubeApi(ApiServerConfig(url=status["apiserver"]))
        dp = OvsDataplane(endpoint, ovs_rundir=Path(status["run_dir"]) / "ovs")
        deadline = time.monotonic() + 60
        slots: list[str] = []
        while len(slots) < 8:
            published = api.list_slices(node, DRIVER_NAME)
            slots = sorted(d["name"] for s in published for d in s["spec"].get("devices") or []
                           if (d.get("attributes") or {}).get("bridge", {}).get("string") == bridge)  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent published {len(slots)} slots of {bridge}, need 8")
            time.sleep(0.1)
        kubelet = DraKubelet(Path(status["dra_plugins_registry"]))
        kubelet.register()
        conf = {"cniVersion": "1.1.0", "name": "bench", "type": "vhostplug", "bridge": bridge,
                "agentSocket": str(paths.agent_socket), "socketRoot": str(paths.socket_root)}  # fmt: skip
        cni_latency.run_shim(paths, "ADD", "warmup", conf)  # the bridge exists from here on
        cni_latency.run_shim(paths, "DEL", "warmup", conf)
        for per_call in (1, 8):
            prep, unprep, cni_add, floor = [], [], [], []
            for i in range(SAMPLES):
                claims = [create_claim(api, node, slots[k], f"net{k}") for k in range(per_call)]
                t0 = time.perf_counter()
                resp = kubelet.prepare(claims)
                prep.append((time.perf_counter() - t0) * 1000)
                errors = [e.error for e in resp.claims.values() if e.error]
                if errors or len(resp.claims) != per_call:
                    raise RuntimeError(f"prepare failed: {errors}")
                t0 = time.perf_counter()
                resp2 = kubelet.unprepare(claims)
                unprep.append((time.perf_counter() - t0) * 1000)
                if any(e.error for e in resp2.claims.values()):
                    raise RuntimeError(f"unprepare failed: {resp2}")
                for c in claims:
                    delete_claim(api, c)
                if per_call == 1:
                    cni_add.append(cni_latency.run_shim(paths, "ADD", f"cmp{i}", conf)[0])
                    cni_latency.run_shim(paths, "DEL", f"cmp{i}", conf)
                raw = f"draraw{per_call}x{i}"
                floor.append(cni_latency.run_floor(endpoint, raw, str(run_dir / raw)))
            point: dict[str, Any] = {
                "prepare_ms": summary(prep),
                "unprepare_ms": summary(unprep),
                "ovs_vswitchd_floor_per_port_ms": summary(floor),
            }
            share = per_call * point["ovs_vswitchd_floor_per_port_ms"]["p50"] / point["prepare_ms"]["p50"]
            point["ovs_vswitchd_share_of_prepare_p50"] = round(share, 3)
            if per_call == 1:
                point["cni_add_same_port_ms"] = summary(cni_add)
                point["prepare_minus_cni_add_p50_ms"] = round(
                    point["prepare_ms"]["p50"] - point["cni_add_same_port_ms"]["p50"], 3
                )
                point["target_prepare_le_cni_add_plus_5ms"] = point["prepare_minus_cni_add_p50_ms"] <= 5.0
            results[f"claims_per_call_{per_call}"] = point
            print(f"{per_call} claim(s)/call: Prepare p50 {point['prepare_ms']['p50']:.2f} ms p99 "
                  f"{point['prepare_ms']['p99']:.2f} | Unprepare p50 {point['unprepare_ms']['p50']:.2f} | "
                  f"ovs-vswitchd share {share:.0%}"
                  + (f" | CNI ADD p50 {point['cni_add_same_port_ms']['p50']:.2f} ms" if per_call == 1 else ""),
                  flush=True)  # fmt: skip
        pid = int(status["pid_agent"])
        usage = [(0, *agent_usage(pid))]
        t_churn = time.perf_counter()
        for i in range(1, CHURN + 1):
            [c] = [create_claim(api, node, slots[0], "net0")]
            if kubelet.prepare([c]).claims[c.uid].error or kubelet.unprepare([c]).claims[c.uid].error:
                raise RuntimeError(f"churn {i}: prepare/unprepare failed")
            delete_claim(api, c)
            if i % 100 == 0:
                usage.append((i, *agent_usage(pid)))
        churn_s = time.perf_counter() - t_churn
        left = leftovers(paths, status, dp)
        results["churn"] = {
            "cycles": CHURN,
            "seconds": round(churn_s, 1),
            "agent_fds_rss_mb": [{"after": n, "fds": f, "rss_mb": r} for n, f, r in usage],
            "fds_growth": usage[-1][1] - usage[1][1],
            "rss_growth_mb_after_first_100": round(usage[-1][2] - usage[1][2], 1),
            "left_behind": left,
            "nothing_left": not any(left.values()),
        }
        print(f"churn x{CHURN}: {churn_s:.1f} s, fds {usage[1][1]} -> {usage[-1][1]}, RSS {usage[1][2]} -> "
              f"{usage[-1][2]} MB, left behind: {left}", flush=True)  # fmt: skip
        kubelet.close()
        dp.close()
        api.close()
    finally:
        lab_down(run_dir)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
