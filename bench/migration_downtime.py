#!/usr/bin/env python3
"""Live-migration downtime on one host: the lab VM (TCG) pinging a testpmd through a private OVS-DPDK every 50 ms is
migrated over QMP from a source to a target QEMU, each in its own mount namespace behind the same stable socket path
(see vhostplug.lab.migration). Downtime = the longest host-timestamped silence between two ping replies read from the
serial consoles (it includes one 50 ms ping interval), next to QEMU's own `downtime` from `query-migrate`.

Runs BENCH_RUNS (default 3) fresh migrations, writes bench/results/migration_downtime.json and prints the figures.
Needs root and the lab guest (scripts/build-guest.sh); starts and stops its own private OVS-DPDK.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from vhostplug.lab.migration.scenario import MigrationLab
from vhostplug.lab.ovs import PrivateOvs

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
OUT = Path(__file__).resolve().parent / "results" / "migration_downtime.json"


def main() -> None:
    ovs_dir = Path(tempfile.mkdtemp(prefix="vhp-ovs-", dir="/tmp"))
    ovs = PrivateOvs(ovs_dir)
    runs: list[dict[str, Any]] = []
    try:
        ovs.start()
        for i in range(RUNS):
            root = Path(tempfile.mkdtemp(prefix="vhp-", dir="/tmp"))
            lab = MigrationLab(ovs_dir, ovs.endpoint, root, uuid.uuid4().hex[:6])
            try:
                lab.boot()
                run = lab.run(f"unix:{root}/mig.sock").as_dict()
            finally:
                lab.close()
                shutil.rmtree(root, ignore_errors=True)
            runs.append(run)
            print(
                f"run {i + 1}: ping gap {run['ping_gap_s'] * 1000:.0f} ms ({run['lost_replies']} replies lost), "
                f"QMP downtime {run['qmp_downtime_ms']} ms, migration {run['migration_s']:.2f} s",
                flush=True,
            )
    finally:
        ovs.stop()
        shutil.rmtree(ovs_dir, ignore_errors=True)
    gaps = [r["ping_gap_s"] for r in runs]
    qmp = [r["qmp_downtime_ms"] for r in runs if r["qmp_downtime_ms"] is not None]
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "setup": "one host, TCG q35 256 MiB guest, vhost-user via private OVS-DPDK (no hugepages), testpmd icmpecho "
        "peer, guest ping interval 50 ms, precopy over a unix socket, downtime-limit 100 ms",
        "runs": runs,
        "ping_gap_s": gaps,
        "ping_gap_p50_s": statistics.median(gaps),
        "ping_gap_max_s": max(gaps),
        "qmp_downtime_ms": qmp,
        "qmp_downtime_p50_ms": statistics.median(qmp) if qmp else None,
        "target_s": 0.5,
        "meets_target": statistics.median(gaps) <= 0.5,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"downtime (ping gap) p50 {result['ping_gap_p50_s'] * 1000:.0f} ms, max {result['ping_gap_max_s'] * 1000:.0f} ms;"
        f" QMP downtime p50 {result['qmp_downtime_p50_ms']} ms; target <= 500 ms: "
        f"{'met' if result['meets_target'] else 'NOT met'}; wrote {OUT}"
    )


if __name__ == "__main__":
    main()
