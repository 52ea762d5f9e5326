#!/usr/bin/env python3
"""Benchmark of the device plugin over real gRPC on unix sockets, driven by the lab kubelet.

Measures Allocate latency (one vhostuser device per call: folder emptied and owned, dp device-info file written)
and the time from a device change (a vDPA hot-add in a fake sysfs plus a forced rescan, and a health flip) to the
ListAndWatch update seen by the client. Writes bench/results/deviceplugin_allocate.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.config import load_config
from vhostplug.deviceplugin.manager import DevicePluginManager
from vhostplug.lab.kubelet import LabKubelet
from vhostplug_testsupport.fakesys import standard

ROOT = Path(__file__).resolve().parent.parent
VU = "vhostplug.io/vhostuser"
VDPA = "vhostplug.io/vdpa"
OUT = ROOT / "bench" / "results" / "deviceplugin_allocate.json"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(max(ms), 3),
    }


class FlipProbe:
    ok = True

    def __call__(self) -> tuple[bool, str]:
        return self.ok, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--allocations", type=int, default=500)
    ap.add_argument("--changes", type=int, default=50)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # health flips are logged as warnings: keep the output clean

    work = Path(tempfile.mkdtemp(prefix="vhp-bench-", dir="/tmp"))
    try:
        return _run(work, args.allocations, args.changes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, allocations: int, changes: int) -> int:
    fs = standard(work / "f")
    probe = FlipProbe()
    cfg = load_config(
        {
            "healthSeconds": 600,  # changes are pushed by forced polls below, so the timing is ours alone
            "vhostuser": {"count": 64},
            "dataplane": {"enabled": False},
            "vdpa": {
                "sysfsRoot": str(fs.sys),
                "devRoot": str(fs.dev),
                "rescanSeconds": 3600,
                "pools": [{"resourceName": VDPA, "selectors": {"vdpaType": "vhost"}}],
            },
        }
    )
    kubelet = LabKubelet(work / "dp")
    kubelet.start()
    manager = DevicePluginManager(
        cfg, work / "s", work / "dp", work / "di", container_root="/var/run/vhostplug", health_probe=probe
    )
    try:
        manager.start()
        kubelet.wait_for(VU, lambda d: len(d) == 64, timeout=10)
        kubelet.wait_for(VDPA, lambda d: len(d) == 3, timeout=10)
        stub = kubelet.stub(VU)
        ids = [d.id for d in manager.sources[VU].poll()]
        for i in range(20):  # warm up channel and caches
            stub.Allocate(pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[ids[i]])]))
        alloc_ms: list[float] = []
        for i in range(allocations):
            req = pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[ids[i % 64]])])
            t = time.perf_counter()
            stub.Allocate(req, timeout=5)
            alloc_ms.append((time.perf_counter() - t) * 1000)

        hotadd_ms: list[float] = []
        for i in range(changes):
            name, addr = f"vdpa{100 + i}", f"0000:66:{i // 8:02x}.{i % 8}"
            fs.add_vf(addr, "0000:65:00.0")
            t = time.perf_counter()
            fs.add_vdpa(addr, name, index=100 + i)
            manager.rescan()
            kubelet.wait_for(VDPA, lambda d, n=name: n in {x.ID for x in d}, timeout=5)
            hotadd_ms.append((time.perf_counter() - t) * 1000)

        flip_ms: list[float] = []
        for i in range(changes):
            want = "Unhealthy" if i % 2 == 0 else "Healthy"
            t = time.perf_counter()
            probe.ok = want == "Healthy"
            manager.refresh()
            kubelet.wait_for(VU, lambda d, w=want: all(x.health == w for x in d), timeout=5)
            flip_ms.append((time.perf_counter() - t) * 1000)
    finally:
        manager.stop()
        kubelet.stop()

    result = {
        "benchmark": "deviceplugin_allocate",
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "allocate_1_vhostuser_device": summary(alloc_ms),
        "vdpa_hotadd_to_listandwatch": summary(hotadd_ms),
        "health_flip_to_listandwatch": summary(flip_ms),
        "target": {"allocate_p50_ms_max": 2.0},
        "allocate_p50_within_target": pct(alloc_ms, 50) <= 2.0,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
