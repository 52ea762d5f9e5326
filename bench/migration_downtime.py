#!/usr/bin/env python3
"""Live-migration downtime in the two-node lab, same-node and cross-node, as KubeVirt migrates a VM: the source
virt-launcher pod on node a, a target pod made by the target node's device plugin and agent (CNI ADD through its
shim), the same stable socket path in both QEMUs' mount namespaces, QMP precopy over a unix socket, then the source
pod's CNI DEL (see vhostplug.lab.migration.crossnode). The lab VM (TCG) pings a testpmd ``icmpecho`` pod on node a
every BENCH_INTERVAL s (default 0.02); the gap is the longest host-timestamped silence between two ping replies read
from the serial consoles (it includes up to one ping interval), next to QEMU's own `downtime` from `query-migrate`.

Runs BENCH_RUNS (default 5) migrations per mode, alternating same-node (a -> a) and cross-node (a -> b) so both see the
same machine load, plus one timed run per mode whose timeline (QEMU, ovs-vswitchd log, the agents' log, port
counters, RARP counter, MAC learning, ping replies) explains the gap. Knobs: BENCH_PMD_MAXSLEEP_US (default 0,1000: one mode
per value of a comma list, set live on both nodes before each run: how long an idle PMD may sleep,
OVS 3.1 ``pmd-maxsleep``); BENCH_ANNOUNCE=default keeps QEMU's announce timing (else the lab's fast announce,
crossnode.FAST_ANNOUNCE); BENCH_GUEST_ANNOUNCE=on lets the guest's driver announce (else QEMU does, by RARP through
the vhost-user backend: ``guest_announce=off``); BENCH_FORGET=off brings the lab up with agents that keep a port's
MAC when its link changes (dataplane.forgetMacOnLinkChange: false; by default each node's agent makes its switch
forget the VM's MAC when the source port goes down and the target port comes up); BENCH_TARGET_NICE (default -10,
crossnode.CrossNodeMigration.target_nice) is the target QEMU's nice value. A run whose guest NIC stays silent after
the switch-over (the guest's virtio-net driver finds a used-ring entry it never made and its ping locks up: a fault
of the vhost-user migration between QEMU and OVS-DPDK here, see docs/benchmarks.md) is counted, said (the guest's
console, the target port's counters, where each switch has the VM's MAC) and made again, twice at most; a mode whose
run stays silent three times goes on without it. BENCH_RUN_DIR reuses a two-node lab that is up (else one is brought up in a
temporary folder and taken down). Writes BENCH_OUT (default bench/results/migration_downtime.json).
Needs root and the lab guest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console

from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab import cluster
from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_node import stop_kubelet
from vhostplug.lab.migration import MigrationError
from vhostplug.lab.migration.crossnode import FAST_ANNOUNCE, CrossNodeMigration
from vhostplug.lab.report import Progress
from vhostplug.lab.stack import FORGET_MAC_ENV

#: a migrated guest whose virtio-net TX ring broke (see the docstring): no reply at all after the switch-over
SILENT = re.compile(r"only 0 of \d+ ping replies")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
INTERVAL = float(os.environ.get("BENCH_INTERVAL", "0.02"))
GUEST_ANNOUNCE = os.environ.get("BENCH_GUEST_ANNOUNCE", "off") == "on"
TARGET_NICE = int(os.environ.get("BENCH_TARGET_NICE", "-10"))
FORGET = os.environ.get("BENCH_FORGET", "on") != "off"
ANNOUNCE = None if os.environ.get("BENCH_ANNOUNCE") == "default" else FAST_ANNOUNCE
#: BENCH_PMD_MAXSLEEP_US: the PMD sleeps to compare, comma-separated, each run of each mode once per value (0: the
#: PMDs poll without pause, as a node's do; 1000: OVS 3.1's load-based sleep lets an idle PMD leave its core)
PMD_SLEEPS = [int(v) for v in os.environ.get("BENCH_PMD_MAXSLEEP_US", "0,1000").split(",")]
OUT = Path(os.environ.get("BENCH_OUT", Path(__file__).resolve().parent / "results" / "migration_downtime.json"))


def one(a: DemoContext, target: DemoContext, timeline: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="vhp-m", dir="/tmp"))  # short: QMP and vhost-user socket paths
    mig = CrossNodeMigration(
        a,
        target,
        a,
        root,
        uuid.uuid4().hex[:6],
        interval=INTERVAL,
        announce=ANNOUNCE,
        guest_announce=GUEST_ANNOUNCE,
        target_nice=TARGET_NICE,
    )
    try:
        mig.boot()
        return mig.run(f"unix:{root}/mig.sock", timeline=timeline)
    except Exception:
        for vm in mig.vms.values():
            print(f"--- {vm.name} log tail:\n{vm.log_tail()}", flush=True)
        raise
    finally:
        mig.close()
        shutil.rmtree(root, ignore_errors=True)


def kubelet_up(ctx: DemoContext) -> None:
    """The node's lab kubelet, started as a restarted kubelet does (its folder's sockets wiped), so the agent of a lab
    that served an earlier kubelet registers again."""
    from vhostplug.lab.kubelet import LabKubelet
    from vhostplug.lab.multus import RESOURCE

    ctx.kubelet = LabKubelet(ctx.paths.device_plugin_dir)
    ctx.kubelet.restart()
    ctx.kubelet.serve_pod_resources(ctx.paths.pod_resources_socket)
    ctx.kubelet.wait_for(RESOURCE, lambda ds: len(ds) >= 4 and all(d.health == "Healthy" for d in ds), timeout=60)


def pmd_maxsleep(ctx: DemoContext, us: int) -> None:
    """The node's PMDs may sleep up to ``us`` µs while idle (OVS 3.1 ``other_config:pmd-maxsleep``, applied live)."""
    ovsdb_rpc.transact(
        ctx.ovs_endpoint,
        [
            {
                "op": "mutate",
                "table": "Open_vSwitch",
                "where": [],
                "mutations": [
                    ["other_config", "delete", ["set", ["pmd-maxsleep"]]],
                    ["other_config", "insert", ["map", [["pmd-maxsleep", str(us)]]]],
                ],
            }
        ],
    )


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    own = "BENCH_RUN_DIR" not in os.environ
    run_dir = Path(os.environ.get("BENCH_RUN_DIR") or tempfile.mkdtemp(prefix="vhp-2m", dir="/tmp"))
    progress = Progress(Console(quiet=True))
    ctxs: list[DemoContext] = []
    # one mode per target node and PMD sleep: "same-node", "cross-node" (+ ", pmd-maxsleep N us" when several)
    named = [
        (f"{where}{f', pmd-maxsleep {us} us' if len(PMD_SLEEPS) > 1 else ''}", where, us)
        for us in PMD_SLEEPS
        for where in ("same-node", "cross-node")
    ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _w, _us in named}
    timelines: dict[str, Any] = {}
    silent = dict.fromkeys(runs, 0)
    silent_said: list[str] = []
    loads = [_load()]
    try:
        if not FORGET:
            if not own:
                raise SystemExit("BENCH_FORGET=off needs a lab of the bench's own (no BENCH_RUN_DIR)")
            os.environ[FORGET_MAC_ENV] = "off"
        cluster.cluster_up(run_dir, nodes=2)
        ctxs = [DemoContext(d, progress) for d in cluster.nodes_of(run_dir)]
        for ctx in ctxs:
            kubelet_up(ctx)
            ctx.ovs_endpoint = f"unix:{ctx.paths.ovs_dir / 'db.sock'}"
        a, b = ctxs
        for i in range(RUNS + 1):
            for mode, where, sleep_us in named:
                target = a if where == "same-node" else b
                for ctx in ctxs:
                    pmd_maxsleep(ctx, sleep_us)
                timed = i == RUNS
                run = None
                for _attempt in range(3):
                    try:
                        run = one(a, target, timeline=timed)
                        break
                    except MigrationError as exc:  # counted and said in the JSON, the run is made again (twice)
                        if not SILENT.match(str(exc)):
                            raise
                        silent[mode] += 1
                        silent_said.append(f"{mode}: {exc}")
                        print(f"{mode}: silent after the switch-over: {exc}", flush=True)
                if run is None:  # three times silent: said, and the bench goes on
                    continue
                run["pmd_maxsleep_us"] = sleep_us
                if timed:
                    timelines[mode] = run
                else:
                    runs[mode].append(run)
                print(
                    f"{mode} {'timed' if timed else i + 1}: gap {run['gap_ms']:.0f} ms ({run['lost_replies']} lost, "
                    f"began {run['gap_began_ms_after_stop']:.0f} ms after the STOP), "
                    f"QEMU downtime {run['qemu_downtime_ms']} ms, load {_load()}",
                    flush=True,
                )
                loads.append(_load())
    finally:
        for ctx in ctxs:
            stop_kubelet(ctx)
        if own:
            cluster.cluster_down(run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
    summary: dict[str, Any] = {}
    for mode, rs in runs.items():
        if not rs:
            continue
        gaps = [r["gap_ms"] for r in rs]
        qd = [r["qemu_downtime_ms"] for r in rs if r["qemu_downtime_ms"] is not None]
        summary[mode] = {
            "gap_ms": gaps,
            "gap_p50_ms": statistics.median(gaps),
            "gap_max_ms": max(gaps),
            "qemu_downtime_ms": qd,
            "qemu_downtime_p50_ms": statistics.median(qd) if qd else None,
            "meets_target": statistics.median(gaps) <= 100,
        }
    cpu = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_avg": loads,
        "cores": cpu,
        "cpu_layout": "both nodes' OVS PMDs on core 1 (pmd-cpu-mask 0x2), testpmd peer lcores on core 0, QEMU (TCG) "
        f"and everything else unpinned; the target QEMU at nice {TARGET_NICE} from just before the migration; PMDs "
        f"may sleep while idle up to (us, pmd-maxsleep, per mode): {PMD_SLEEPS}",
        "setup": f"two-node lab, TCG q35 256 MiB guest, vhost-user via each node's OVS-DPDK (no hugepages), devices "
        f"and ports from the nodes' agents, testpmd icmpecho peer pod on node-a, guest ping interval {INTERVAL} s, "
        f"precopy over a unix socket, downtime-limit 100 ms, announce {ANNOUNCE or 'QEMU defaults'}, "
        f"guest_announce {'on' if GUEST_ANNOUNCE else 'off'}, the nodes' agents make their switches forget a port's MAC on "
        f"its link change: {'yes' if FORGET else 'no'}",
        "runs": runs,
        "summary": summary,
        "timeline_runs": timelines,
        "silent_nic_runs_redone": silent,
        "silent_nic_runs_said": silent_said,
        "target_ms": 100,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for mode, s in summary.items():
        print(
            f"{mode}: gap p50 {s['gap_p50_ms']:.0f} ms, max {s['gap_max_ms']:.0f} ms; QEMU downtime p50 "
            f"{s['qemu_downtime_p50_ms']} ms; target <= 100 ms {'met' if s['meets_target'] else 'NOT met'}"
        )
    for mode, run in timelines.items():
        print(f"--- timeline of one {mode} migration (ms from the source's STOP), gap {run['gap_ms']} ms")
        for row in run["timeline"]:
            print(f"{row['ms']:>9} {row['node']:>7}  {row['what']}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    if sys.argv[1:]:  # no options: it is driven by BENCH_* variables (above)
        print(__doc__)
        raise SystemExit(0 if sys.argv[1] in ("-h", "--help") else 2)
    main()
