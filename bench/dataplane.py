#!/usr/bin/env python3
"""Dataplane benchmark: the packet rate and round-trip latency a pod gets over vhost-user (vhostplug) against the
kernel paths it would otherwise get, side by side in one run on the lab's private OVS-DPDK.

Two lab pods (network + mount namespaces) made the demo's way (kubelet Allocate, Multus device-info, CNI ADD through
the installed shim, downward-API annotations). In each path the same DPDK testpmd runs in both pods, sender
``txonly`` → receiver ``rxonly`` (one direction), per frame size, for BENCH_SECONDS after BENCH_WARMUP, BENCH_REPS
times:

1. ``vhost-user``: the CNI-made ``dpdkvhostuserclient`` ports, virtio_user vdevs printed by ``vhostplug podinfo``;
2. ``ovs-system-veth``: a veth pair per pod whose host end is a ``system`` port of the same OVS-DPDK bridge, testpmd
   on ``net_af_packet`` in the pod (what a pod's kernel interface gets on an OVS-DPDK node);
3. ``direct-veth``: one veth pair between the two pods, ``net_af_packet`` (the best kernel path, no switch).

Latency (paths 1 and 2): one testpmd in pod A owns both ends (one lcore polls both ports, so no second busy poller
has to be scheduled for a packet to move on), ``macswap`` with ``--port-topology=loop``, bursts of 1, one packet per
port in flight (``start tx_first 1``); the received counters are sampled every BENCH_LAT_WINDOW seconds and each
window gives the mean round trip of its packets; p50/p99 are over the windows.

The time-slice trap: the two pods' testpmds share core 0 (OVS's PMD owns core 1). Each busy poller runs for a
scheduler slice (ms), so a receiver drains at most one ring per slice: with 256 descriptors that caps any path at
tens of kpps. Remedy chosen: rings of BENCH_RING descriptors on every path alike (virtio_user ``queue_size``,
af_packet ``framecnt``, testpmd ``--rxd/--txd``), enough to hold a slice's worth of packets. One process owning both
ports cannot do txonly → rxonly (testpmd has one forwarding mode) nor open af_packet sockets in two pods' network
namespaces, and a third core for the receiver does not exist here.

The no-switch limit (part ``limit``, bench/dataplane_limit.py): one app in pod A io-forwarding between two
virtio_user ports, packets circulating through the switch on core 1, alternated BENCH_ALTERNATIONS times between
DPDK's vhost PMD (``net_vhost`` in testpmd, ovs-vswitchd stopped) and OVS-DPDK through the CNI-made ports; the
vhost-user path as a percentage of the limit, and each switch's own CPU cost per packet.

Writes bench/results/dataplane.json and bench/results/dataplane.png and prints the tables. Knobs (environment):
BENCH_SECONDS (10), BENCH_WARMUP (2), BENCH_REPS (3), BENCH_FRAMES (64,1518), BENCH_RING (16384),
BENCH_LAT_SECONDS (10), BENCH_LAT_WINDOW (0.2), BENCH_PARTS (latency,limit,throughput), BENCH_OUT
(bench/results/dataplane.json; a run of only some parts writes nothing unless BENCH_OUT is given),
BENCH_HUGEPAGES (auto: as `vhostplug lab up`; 1; 0), BENCH_ALTERNATIONS (3), BENCH_LOOP_BURSTS (32),
BENCH_LEVERS (none; names in dataplane_limit.LEVER_TABLE), BENCH_PROFILE (0; 1: perf and pmd-perf-show).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_node import lab_up, start_kubelet
from vhostplug.lab.demo_pods import create_pods
from vhostplug.lab.demo_traffic import APP_LCORES, app_memory_mb, cpu_layout, vhostplug_exe, with_ring
from vhostplug.lab.multus import IFNAME, host_socket
from vhostplug.lab.ovs import OvsConfig, hugepages_free_mb
from vhostplug.lab.pods import LabPod, run
from vhostplug.lab.rate import Flow, measure, port_counters
from vhostplug.lab.report import Progress
from vhostplug.lab.testpmd import Testpmd
from vhostplug.podinfo.dpdk import PACKED

REPO = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "2"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
FRAMES = [int(x) for x in os.environ.get("BENCH_FRAMES", "64,1518").split(",")]
RING = int(os.environ.get("BENCH_RING", "16384"))
LAT_SECONDS = float(os.environ.get("BENCH_LAT_SECONDS", "10"))
LAT_WINDOW = float(os.environ.get("BENCH_LAT_WINDOW", "0.2"))
OUT = Path(os.environ.get("BENCH_OUT", str(REPO / "bench" / "results" / "dataplane.json")))
ALL_PARTS = {"throughput", "latency", "limit"}
PARTS = set(os.environ.get("BENCH_PARTS", ",".join(sorted(ALL_PARTS))).split(","))
# the lab's OVS-DPDK (and the limit's forwarder) on 2 MB hugepages: 1, 0, or auto (as `vhostplug lab up`)
HUGEPAGES = {"1": True, "0": False}.get(os.environ.get("BENCH_HUGEPAGES", "auto"))
PATHS = ("vhost-user", "ovs-system-veth", "direct-veth")


def af_packet(iface: str, index: int = 0) -> str:
    return f"net_af_packet{index},iface={iface},framecnt={RING}"


def sh(*cmd: str) -> str:
    return run(list(cmd), " ".join(cmd))


class Veths:
    """The kernel paths' veth pairs: a pair per pod into the OVS bridge (system ports), and one between the pods."""

    def __init__(self, tag: str, ovs_netns: str, ovsdb_sock: str, bridge: str, pods: list[LabPod]) -> None:
        self.ovs_netns, self.db, self.bridge = ovs_netns, ovsdb_sock, bridge
        self.a, self.b = pods
        self.host = {"a": f"k{tag}a", "b": f"k{tag}b"}  # host ends, in OVS's network namespace
        self.pod2 = {"a": f"s{tag}a", "b": f"s{tag}b"}  # path 2, pod ends
        self.pod3 = {"a": f"d{tag}a", "b": f"d{tag}b"}  # path 3, one pair between the pods

    def _vsctl(self, *args: str) -> None:
        sh("ovs-vsctl", f"--db=unix:{self.db}", "--timeout=30", *args)

    @staticmethod
    def _up(netns: str, dev: str) -> None:
        # no IPv6 autoconfiguration: nothing but the benchmark's packets on these links
        sh("ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
        sh("ip", "-n", netns, "link", "set", dev, "up")

    def create(self) -> None:
        for who, pod in (("a", self.a), ("b", self.b)):
            sh("ip", "link", "add", self.host[who], "type", "veth", "peer", "name", self.pod2[who])
            sh("ip", "link", "set", self.host[who], "netns", self.ovs_netns)
            sh("ip", "link", "set", self.pod2[who], "netns", pod.netns)
            self._up(self.ovs_netns, self.host[who])
            self._up(pod.netns, self.pod2[who])
            self._vsctl("add-port", self.bridge, self.host[who])
        sh("ip", "link", "add", self.pod3["a"], "type", "veth", "peer", "name", self.pod3["b"])
        sh("ip", "link", "set", self.pod3["a"], "netns", self.a.netns)
        sh("ip", "link", "set", self.pod3["b"], "netns", self.b.netns)
        self._up(self.a.netns, self.pod3["a"])
        self._up(self.b.netns, self.pod3["b"])

    def move_b_to_a(self) -> None:
        """Both path-2 pod ends into pod A, for the one-process latency run."""
        sh("ip", "-n", self.b.netns, "link", "set", self.pod2["b"], "netns", self.a.netns)
        self._up(self.a.netns, self.pod2["b"])

    def delete(self) -> None:
        for who in ("a", "b"):
            subprocess.run(
                ["ovs-vsctl", f"--db=unix:{self.db}", "--timeout=10", "--if-exists", "del-port", self.host[who]],
                capture_output=True,
                check=False,
            )
            subprocess.run(["ip", "-n", self.ovs_netns, "link", "del", self.host[who]], capture_output=True)
        for pod in (self.a, self.b):
            subprocess.run(["ip", "-n", pod.netns, "link", "del", self.pod3["a"]], capture_output=True)


@contextmanager
def testpmds(ctx: DemoContext, vdevs: dict[str, list[str]], tag: str, **kw: Any) -> Iterator[dict[str, Testpmd]]:
    """One testpmd per entry of ``vdevs`` (pod name → vdevs), inside that pod, links up; stopped on exit."""
    apps: dict[str, Testpmd] = {}
    try:
        for name, devs in vdevs.items():
            pod = ctx.pods[name]
            prefix = ctx.names.prefix(f"{tag}{name[-1]}")
            ctx.state.add("testpmd_prefixes", prefix)
            app = Testpmd(
                devs,
                prefix,
                wrap=pod.nsenter(),
                lcores=APP_LCORES,
                ring=RING,
                # every rx and tx descriptor of each port may hold an mbuf (virtio's packed-ring tx path frees them
                # late), plus the lcores' mempool caches: fewer, and a two-port app stalls once the pool is empty
                mbufs=max(4 * RING, 2 * len(devs) * RING + 4096),
                memory_mb=app_memory_mb(RING),
                **kw,
            )
            apps[name] = app
            app.start(timeout=60)
        for app in apps.values():
            for port in range(len(next(iter(vdevs.values())))):
                app.wait_link_up(port, timeout=45)
        yield apps
    finally:
        for app in apps.values():
            app.stop()


def podinfo_vdev(pod: LabPod) -> str:
    out = pod.exec(vhostplug_exe(), "podinfo", "--dpdk-args", "--wait", "10", what="podinfo")
    vdevs = [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("--vdev ")]
    if len(vdevs) != 1:
        raise RuntimeError(f"podinfo in pod {pod.name} printed {vdevs}")
    return vdevs[0]


def throughput(ctx: DemoContext, path: str, vdevs: dict[str, list[str]], rep: int) -> list[Flow]:
    (a, b) = list(vdevs)
    flows = []
    with testpmds(ctx, vdevs, f"t{PATHS.index(path)}{rep}") as apps:
        for frame in FRAMES:
            flows.append(measure(apps[a], apps[b], frame, SECONDS, WARMUP, (a, b)))
    return flows


def _totals(app: Testpmd) -> tuple[int, int]:
    """(rx, tx) packets summed over ports 0 and 1."""
    pairs = [port_counters(app, p) for p in (0, 1)]
    return sum(r for r, _ in pairs), sum(t for _, t in pairs)


def flush_fdb(ovs: Any, bridge: str) -> None:
    """Forget learned MACs: the previous path's packets taught the bridge addresses that now live elsewhere."""
    sh("ovs-appctl", "-t", str(ovs.vswitchd_ctl), "fdb/flush", bridge)


def wait_rxqs_enabled(ovs: Any, ports: list[str], timeout: float = 60.0) -> None:
    """Until OVS's PMD polls an enabled rx queue of each vhost-user port (a seed packet sent before is lost)."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ovs-appctl", "-t", str(ovs.vswitchd_ctl), "dpif-netdev/pmd-rxq-show"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        enabled = [ln for ln in out.splitlines() if "(enabled)" in ln]
        if all(any(f"port: {p} " in ln for ln in enabled) for p in ports):
            return
        time.sleep(0.2)
    raise RuntimeError(f"OVS did not enable the rx queues of {ports}:\n{out}")


def latency(ctx: DemoContext, pod: str, devs: list[str], tag: str, ready: Any = None) -> dict[str, Any]:
    """Round trip of single packets: one testpmd owning both ends, macswap, loop topology, bursts of 1.

    ``start tx_first 1`` puts one packet on each port; the packets in flight are counted as sent minus received
    (2 when none was lost or stuck), and a window of ``dt`` seconds with ``n`` received gives a mean round trip of
    ``2 * in_flight * dt / n`` (each packet is received once per port per round trip)."""
    with testpmds(ctx, {pod: devs}, tag, app_args=["--port-topology=loop"]) as apps:
        app = apps[pod]
        if ready is not None:
            ready()
        app.cmd("set fwd macswap")
        app.cmd("set burst 1")
        seeds = 0
        while True:
            base = _totals(app)[0]
            app.cmd("start tx_first 1")
            seeds += 1
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3.0 and _totals(app)[0] == base:
                time.sleep(0.1)
            if _totals(app)[0] > base:
                break
            app.cmd("stop", timeout=20)
            if seeds == 5:
                raise RuntimeError(f"latency {tag}: no packet came back after {seeds} seeds")
        time.sleep(WARMUP)
        # the ports are read one after the other: a packet between its rx and tx in testpmd reads as one fewer in
        # flight, so the count is the largest of a few readings
        in_flight = max(t - r for r, t in (_totals(app) for _ in range(5)))
        rx0 = _totals(app)[0]
        samples: list[float] = []
        last, t_last = rx0, time.monotonic()
        deadline = t_last + LAT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(LAT_WINDOW)
            now, t = _totals(app)[0], time.monotonic()
            # a slow path extends the window until it holds at least one round trip of each packet
            if now - last >= 2 * in_flight:
                samples.append(2 * in_flight * (t - t_last) / (now - last) * 1e6)
                last, t_last = now, t
        rx1, tx1 = _totals(app)
        app.cmd("stop", timeout=20)
    if not samples:
        raise RuntimeError(f"latency {tag}: no round trip completed in {LAT_SECONDS} s")
    qs = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else samples * 99
    return {
        "windows": len(samples),
        "seeds": seeds,
        "in_flight": in_flight,
        "in_flight_at_end": tx1 - rx1,  # one reading (may read one fewer, see above)
        "p50_us": round(qs[49], 1),
        "p99_us": round(qs[98], 1),
        "mean_us": round(statistics.fmean(samples), 1),
        "samples_us": [round(x, 2) for x in samples],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not runs:  # BENCH_PARTS=latency
        return out
    for frame in FRAMES:
        row: dict[str, Any] = {}
        for path in PATHS:
            pts = [r for r in runs if r["path"] == path and r["frame_bytes"] == frame]
            mpps = [p["rx_mpps"] for p in pts]
            row[path] = {
                "rx_mpps_median": round(statistics.median(mpps), 4),
                "rx_mpps_min": min(mpps),
                "rx_mpps_max": max(mpps),
                "rx_gbps_median": round(statistics.median(p["rx_gbps"] for p in pts), 3),
                "tx_mpps_median": round(statistics.median(p["tx_mpps"] for p in pts), 4),
            }
        v = row["vhost-user"]["rx_mpps_median"]
        row["ratio_1_to_2"] = round(v / max(row["ovs-system-veth"]["rx_mpps_median"], 1e-9), 1)
        row["ratio_1_to_3"] = round(v / max(row["direct-veth"]["rx_mpps_median"], 1e-9), 1)
        out[str(frame)] = row
    return out


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def other_vswitchds(ours: Path) -> int:
    """ovs-vswitchd processes on this machine that are not ours (other labs' PMDs compete for core 1)."""
    n = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                comm = (proc / "comm").read_text().strip()
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if comm.startswith("ovs-vswitchd") and str(ours) not in cmdline:
                n += 1
    return n


def plot(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    if not result["summary"] and not result.get("limit"):
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = result.get("limit", {}).get("summary", {})
    rows = 2 if limit else 1
    fig, grid = plt.subplots(rows, len(FRAMES), figsize=(5 * len(FRAMES), 4 * rows), squeeze=False)
    axes = list(grid[0])
    for ax, frame in zip(grid[1] if limit else [], FRAMES, strict=False):
        lrow = limit[str(frame)]
        arms = [a for a in lrow if a in ("limit", "vhost-user")]
        vals = [lrow[a]["mpps_median"] for a in arms]
        bars = ax.bar(["no-switch limit" if a == "limit" else "vhost-user (OVS-DPDK)" for a in arms], vals)
        labels = [
            f"{v:.3f}" + (f"\n{lrow[a]['pct_of_limit']} % of limit" if a != "limit" else "")
            for a, v in zip(arms, vals, strict=True)
        ]
        ax.bar_label(bars, labels=labels)
        ax.set_title(f"{frame} B, one app io-forwarding, per direction")
        ax.set_ylabel("Mpps per direction (median of alternations)")
    for ax, frame in zip(axes, FRAMES, strict=True):
        if not result["summary"]:
            ax.set_visible(False)
            continue
        row = result["summary"][str(frame)]
        vals = [row[p]["rx_mpps_median"] for p in PATHS]
        bars = ax.bar(PATHS, vals, color=["#2a7", "#c84", "#68c"])
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in vals])
        ax.set_title(f"{frame}-byte frames, txonly → rxonly")
        ax.set_ylabel("received Mpps (median of reps)")
    load = result["machine"]["load_before"][0]
    fig.suptitle(f"vhostplug dataplane, {result['cpu_layout']['text']}; load average {load} at start", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def print_table(result: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    t = Table(title="Dataplane: received rate, txonly → rxonly (median of reps)", title_justify="left")
    for col in ("frame", *PATHS, "1:2", "1:3"):
        t.add_column(col, justify="right")
    for frame, row in result["summary"].items():
        cells = [f"{row[p]['rx_mpps_median']:.3f} Mpps / {row[p]['rx_gbps_median']:.2f} Gb/s" for p in PATHS]
        t.add_row(f"{frame} B", *cells, f"{row['ratio_1_to_2']}x", f"{row['ratio_1_to_3']}x")
    console.print(t)
    lat = Table(title="Round trip, one packet in flight per port (µs)", title_justify="left")
    for col in ("path", "p50", "p99", "windows", "in flight"):
        lat.add_column(col, justify="right")
    for path, v in result["latency"].items():
        lat.add_row(path, f"{v['p50_us']}", f"{v['p99_us']}", str(v["windows"]), str(v["in_flight"]))
    console.print(lat)
    limit = result.get("limit") or {}
    if limit:
        lt = Table(
            title="No-switch limit vs vhost-user through OVS-DPDK: one app io-forwarding between its two ports, "
            "Mpps per direction (median of alternations; switch's own CPU ns per packet)",
            title_justify="left",
        )
        for col in ("arm", *(f"{f} B" for f in FRAMES), "% of limit", "per alternation", "switch ns/pkt (64 B)"):
            lt.add_column(col, justify="right")
        first = limit["summary"][str(FRAMES[0])]
        for arm in first:
            cells = [f"{limit['summary'][str(f)][arm]['mpps_median']:.3f}" for f in FRAMES]
            pct = " / ".join(str(limit["summary"][str(f)][arm].get("pct_of_limit", "")) for f in FRAMES)
            alts = str(first[arm].get("pct_of_limit_per_alternation", ""))
            ns = [
                p.get("switch_ns_per_packet")
                for p in limit["points"]
                if p["arm"] == arm and p["frame_bytes"] == FRAMES[0]
            ]
            ns_med = statistics.median([x for x in ns if x]) if any(ns) else ""
            lt.add_row(arm, *cells, pct, alts, f"{ns_med}")
        console.print(lt)
    console.print(
        f"CPU layout: {result['cpu_layout']['text']}; load before/after: {result['machine']['load_before']}"
        f" / {result['machine']['load_after']}; other ovs-vswitchd on the machine: "
        f"{result['machine']['other_ovs_vswitchd']}"
    )


def limit_part(
    ctx: DemoContext, ovs: Any, bridge: str, ports: list[str], app_vdevs: list[str], console: Console
) -> dict[str, Any]:
    """The no-switch limit against the vhost-user path, alternated (bench/dataplane_limit.py)."""
    import dataplane_limit as dl

    sock_dir = ctx.run_dir / "limit"
    sock_dir.mkdir(exist_ok=True)
    lab = dl.Ovs(
        Path(ovs.run_dir),
        Path(ovs.db_sock),
        Path(ovs.vswitchd_ctl),
        Path(ovs.vswitchd_pidfile),
        bridge,
        ports,
        # the forwarder on the same memory as OVS, when the pool still has room for it
        ovs.hugepage_dir if os.path.ismount(ovs.hugepage_dir) and hugepages_free_mb() >= 512 else None,
    )
    pod = ctx.pods[next(iter(ctx.pods))]

    @contextmanager
    def app(vdevs: list[str], tag: str) -> Iterator[Testpmd]:
        try:
            cm = testpmds(ctx, {pod.name: vdevs}, tag)
            apps = cm.__enter__()
        except Exception as exc:  # an app whose link stays down: say what OVS logged meanwhile
            log = Path(ovs.vswitchd_log)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""
            raise RuntimeError(f"{exc}\n--- {log} (tail) ---\n{tail}") from exc
        try:
            yield apps[pod.name]
        finally:
            cm.__exit__(None, None, None)

    def prefix(tag: str) -> str:
        p = ctx.names.prefix(tag)
        ctx.state.add("testpmd_prefixes", p)
        return p

    arms = 2 + len(dl.LEVERS)
    with ctx.progress.phase(
        f"no-switch limit vs vhost-user: {arms} arms x {dl.ALTERNATIONS} alternations",
        [Path(ovs.vswitchd_log), ctx.paths.agent_log],
    ) as ph:
        ph.doing("limit (net_vhost io on core 1, OVS stopped) / vhost-user (OVS-DPDK) / levers")
        points = dl.run_arms(lab, app_vdevs, sock_dir, FRAMES, SECONDS, WARMUP, app, prefix, console.print)
    return {
        "method": {
            "app": "one testpmd in pod A, two virtio_user ports (podinfo's vdev and pod B's socket), packed rings, "
            f"rings of {RING}, io forwarding, --lcores={APP_LCORES} (core 0); each port addressing the other's MAC; "
            f"start tx_first {dl.LOOP_BURSTS} (x 32 packets per port in flight)",
            "limit": f"testpmd --lcores={dl.SWITCH_LCORES} (core 1), net_vhost client=1 on both app sockets, io "
            "forwarding; ovs-vswitchd SIGSTOPped for the arm (ovs_pmd_cpu_s is its PMD's CPU time over the point)",
            "vhost-user": "OVS-DPDK's PMD on core 1 through the CNI-made dpdkvhostuserclient ports, NORMAL bridge",
            "levers": {n: dl.LEVER_TABLE[n].what for n in dl.LEVERS},
            "ovs_memory": "2 MB hugepages (dpdk-socket-mem=1024)" if lab.huge_dir else "--no-huge -m 2048",
            "limit_memory": "2 MB hugepages (-m 256)" if lab.huge_dir else "--no-huge -m 256",
            "app_memory": "--no-huge (both arms)",
            "alternations": dl.ALTERNATIONS,
            "app_vdevs": app_vdevs,
        },
        "points": points,
        "summary": dl.summarize(points, FRAMES),
    }


def main() -> int:
    if os.geteuid() != 0:
        print("bench/dataplane.py needs root (network namespaces, OVS-DPDK)", file=sys.stderr)
        return 2
    console = Console()
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-dpb-", dir="/tmp"))
    ctx = DemoContext(run_dir, Progress(console))
    machine = {"load_before": load_average(), "other_ovs_vswitchd": other_vswitchds(run_dir)}
    t0 = time.monotonic()
    veths: Veths | None = None
    try:
        lab_up(ctx, hugepages=HUGEPAGES)
        start_kubelet(ctx)
        create_pods(ctx)
        machine["other_ovs_vswitchd"] = other_vswitchds(run_dir)
        names = list(ctx.pods)
        pods = [ctx.pods[n] for n in names]
        from vhostplug.lab.ovs import PrivateOvs

        ovs = PrivateOvs(ctx.paths.ovs_dir)
        machine["ovs_hugepages"] = os.path.ismount(ovs.hugepage_dir)
        bridge = ctx.calls[names[0]].netconf["bridge"]
        veths = Veths(ctx.names.tag, ovs.netns, str(ovs.db_sock), bridge, pods)
        veths.create()
        vhost = {n: podinfo_vdev(ctx.pods[n]) for n in names}
        per_path = {
            "vhost-user": {n: [with_ring(vhost[n], RING)] for n in names},
            "ovs-system-veth": {n: [af_packet(veths.pod2[n[-1]])] for n in names},
            "direct-veth": {n: [af_packet(veths.pod3[n[-1]])] for n in names},
        }
        a = names[0]
        host_b = host_socket(ctx.calls[names[1]])
        # the loop app's second port: pod B's socket by its host path, as podinfo would print it there
        vdev_b = f"net_virtio_user1,path={host_b},server=1{PACKED},queue_size={RING}"
        from vhostplug.model import port_name_for

        vhost_ports = [port_name_for(ctx.calls[n].container_id, IFNAME) for n in names]
        limit: dict[str, Any] = {}
        if "limit" in PARTS:
            limit = limit_part(ctx, ovs, bridge, vhost_ports, [with_ring(vhost[a], RING), vdev_b], console)
        runs: list[dict[str, Any]] = []
        with ctx.progress.phase(f"throughput: {len(PATHS)} paths x {FRAMES} B x {REPS} reps") as ph:
            for rep in range(REPS if "throughput" in PARTS else 0):
                for path in PATHS:
                    ph.doing(f"rep {rep + 1}/{REPS}: {path}")
                    flush_fdb(ovs, bridge)
                    for flow in throughput(ctx, path, per_path[path], rep):
                        runs.append({"path": path, "rep": rep, **flow.to_json()})
                        console.print(
                            f"  rep {rep + 1} {path:16} {flow.frame_bytes:5} B  {flow.mpps:8.4f} Mpps "
                            f"received ({flow.sent_mpps:.4f} sent)"
                        )
        lat: dict[str, Any] = {}
        with ctx.progress.phase("latency: one packet in flight per port, paths 1 and 2") as ph:
            if "latency" in PARTS:
                ph.doing("vhost-user: one testpmd in pod A owning both pods' sockets")
                flush_fdb(ovs, bridge)
                lat["vhost-user"] = latency(
                    ctx,
                    a,
                    [with_ring(vhost[a], RING), vdev_b],
                    "l1",
                    lambda: wait_rxqs_enabled(ovs, vhost_ports),
                )
                ph.doing("ovs-system-veth: both pods' veths in pod A, one testpmd owning both")
                veths.move_b_to_a()
                flush_fdb(ovs, bridge)
                lat["ovs-system-veth"] = latency(
                    ctx, a, [af_packet(veths.pod2["a"], 0), af_packet(veths.pod2["b"], 1)], "l2"
                )
        machine["load_after"] = load_average()
        result = {
            "bench": "dataplane",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": {"kernel": platform.release(), "cpus": os.cpu_count()},
            "method": {
                "traffic": "testpmd txonly (pod A) → rxonly (pod B), one direction, unicast to B's MAC",
                "seconds": SECONDS,
                "warmup": WARMUP,
                "reps": REPS,
                "frames": FRAMES,
                "ring": RING,
                "trap_remedy": f"rings of {RING} descriptors on every path (a scheduler slice's worth of packets)",
                "vhost_user_vdevs": {n: with_ring(vhost[n], RING) for n in names},
                "latency": f"one testpmd owning both ends, macswap, loop topology, burst 1, one packet per port "
                f"(in_flight = sent - received); "
                f"{LAT_SECONDS:g} s sampled in {LAT_WINDOW:g} s windows",
                "command": "python bench/dataplane.py",
            },
            "cpu_layout": cpu_layout(OvsConfig().pmd_cpu_mask),
            "machine": machine,
            "runs": runs,
            "summary": summarize(runs),
            "latency": lat,
            "limit": limit,
            "seconds_total": round(time.monotonic() - t0, 1),
        }
    finally:
        if veths is not None:
            veths.delete()
        from vhostplug.lab.demo import teardown

        teardown(ctx)
        shutil.rmtree(run_dir, ignore_errors=True)
    print_table(result, console)
    if PARTS != ALL_PARTS and "BENCH_OUT" not in os.environ:
        console.print(f"BENCH_PARTS={','.join(sorted(PARTS))} without BENCH_OUT: development run, nothing written")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, OUT.with_suffix(".png"))
    console.print(f"wrote {OUT} and {OUT.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
