"""The no-switch limit beside OVS-DPDK, for bench/dataplane.py: how close the vhost-user path through OVS-DPDK (two
ports our CNI made) comes to what this box can forward between the same two virtio_user ports at all.

One app in both arms: a testpmd in pod A owning two virtio_user ports (pod A's vdev as ``vhostplug podinfo`` prints
it, and pod B's socket by its host path, as the latency run does), packed rings, rings of BENCH_RING descriptors,
``io`` forwarding (port 0 → port 1 and back), main and forwarding lcore on core 0. ``set eth-peer`` makes each
port address the other's MAC and ``start tx_first N`` puts N bursts of 32 on each port; io forwarding then keeps them
circulating: port 0 → switch → port 1 → app → port 0 …, so the bridge forwards unicast, learned, in both directions.
The rate per direction is the packets both ports received in the window, halved.

- **limit**: the switch is a second testpmd on core 1 (``--lcores=0@1,1@1``) with two DPDK vhost PMDs
  (``net_vhost``, ``client=1``) in ``io`` forwarding, on the same app's vdevs with the path moved to private
  sockets. ovs-vswitchd is stopped (SIGSTOP, ours) for the arm, so no OVS PMD polls core 1 meanwhile; the PMD
  thread's CPU time over the arm is recorded (0 proves it).
- **vhost-user**: OVS-DPDK's PMD on core 1 through the CNI-made ``dpdkvhostuserclient`` ports, the bridge's NORMAL
  action (MAC learning), as the lab is set up; the bridge's MAC table flushed first.
- **levers** (BENCH_LEVERS): the vhost-user arm again with one setting changed on the running OVS and undone after
  (port options, ``other_config``, a port-to-port flow, an app-side vdev option), so each lever is an A/B within
  the run under the same load.

The arms alternate BENCH_ALTERNATIONS times (≥ 3); the load average is read before and after each point.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vhostplug.lab.rate import FCS, port_counters, port_mac
from vhostplug.lab.testpmd import Testpmd

ALTERNATIONS = int(os.environ.get("BENCH_ALTERNATIONS", "3"))
LOOP_BURSTS = int(os.environ.get("BENCH_LOOP_BURSTS", "32"))
LEVERS = [x for x in os.environ.get("BENCH_LEVERS", "").split(",") if x]
PROFILE = os.environ.get("BENCH_PROFILE", "") == "1"  # perf + pmd-perf-show / testpmd core cycles on 64 B points
SWITCH_LCORES = "0@1,1@1"  # the limit's forwarder where OVS's PMD would be (pmd-cpu-mask=0x2)


def load_average() -> list[float]:
    return list(os.getloadavg())


def sh(*cmd: str, timeout: float = 30.0) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# -- the OVS side: its PMD thread, pausing it, its statistics -------------------------------------------------------
@dataclass
class Ovs:
    """What the arms need of the lab's private OVS-DPDK: its control sockets, bridge, pid and the CNI-made ports."""

    run_dir: Path
    db_sock: Path
    ctl: Path
    pidfile: Path
    bridge: str
    ports: list[str]
    huge_dir: Path | None = None  # OVS-DPDK on hugepages (BENCH_HUGEPAGES=1): the limit's forwarder too

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def vsctl(self, *args: str) -> str:
        return sh("ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=30", *args)

    def appctl(self, *args: str) -> str:
        return sh("ovs-appctl", "-t", str(self.ctl), *args)

    def ofctl(self, *args: str) -> str:
        cmd, rest = args[0], args[1:]
        return sh("ovs-ofctl", cmd, f"unix:{self.run_dir / (self.bridge + '.mgmt')}", *rest)

    def pmd_cpu_seconds(self) -> float:
        """utime + stime of ovs-vswitchd's PMD threads (comm ``pmd-c01/id:…``)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                comm = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if comm.startswith("pmd"):
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """ovs-vswitchd stopped (SIGSTOP): no OVS PMD polls core 1 while the limit is measured."""
        pid = self.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def wait_rxqs_enabled(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            out = self.appctl("dpif-netdev/pmd-rxq-show")
            enabled = [ln for ln in out.splitlines() if "(enabled)" in ln]
            if all(any(f"port: {p} " in ln for ln in enabled) for p in self.ports):
                return
            time.sleep(0.2)
        raise RuntimeError(f"OVS did not enable the rx queues of {self.ports}:\n{out}")

    def ofport(self, port: str) -> str:
        return self.vsctl("get", "Interface", port, "ofport").strip()


# -- levers: one setting on the running OVS (or the app's vdevs), applied before an arm and undone after -----------
@dataclass(frozen=True)
class Lever:
    name: str
    what: str
    apply: Callable[[Ovs], None] = lambda ovs: None
    undo: Callable[[Ovs], None] = lambda ovs: None
    vdev_suffix: str = ""  # appended to both of the app's virtio_user vdevs


def _other_config(key: str, value: str) -> Lever:
    return Lever(
        f"{key}={value}",
        f"other_config:{key}={value}",
        lambda ovs: ovs.vsctl("set", "Open_vSwitch", ".", f"other_config:{key}={value}"),
        lambda ovs: ovs.vsctl("remove", "Open_vSwitch", ".", "other_config", key),
    )


def _port_option(key: str, value: str) -> Lever:
    def apply(ovs: Ovs) -> None:
        for p in ovs.ports:
            ovs.vsctl("set", "Interface", p, f"options:{key}={value}")

    def undo(ovs: Ovs) -> None:
        for p in ovs.ports:
            ovs.vsctl("remove", "Interface", p, "options", key)

    return Lever(f"{key}={value}", f"Interface options:{key}={value} on both ports", apply, undo)


def _mtu(value: int) -> Lever:
    def apply(ovs: Ovs) -> None:
        for p in ovs.ports:
            ovs.vsctl("set", "Interface", p, f"mtu_request={value}")

    def undo(ovs: Ovs) -> None:
        for p in ovs.ports:
            ovs.vsctl("clear", "Interface", p, "mtu_request")

    return Lever(f"mtu={value}", f"Interface mtu_request={value} on both ports", apply, undo)


def _other_memory() -> Lever:
    """OVS-DPDK on the other memory than the lab's: 2 MB hugepages (as a node runs it) against ``--no-huge``. Rewrites
    the memory part of ``other_config`` and restarts our ovs-vswitchd (DPDK reads it once); the CNI-made ports come
    back from OVSDB. The limit's forwarder keeps the lab's memory."""
    from vhostplug.lab.ovs import OvsConfig, PrivateOvs

    def switch(ovs: Ovs, huge: bool) -> None:
        pv = PrivateOvs(ovs.run_dir, OvsConfig(hugepages=huge))
        if huge:
            pv._mount_hugepages()
        other = pv._dpdk_other_config()
        ovs.vsctl("remove", "Open_vSwitch", ".", "other_config", "dpdk-socket-mem", "dpdk-socket-limit")
        ovs.vsctl("set", "Open_vSwitch", ".", *(f'other_config:{k}="{v}"' for k, v in other.items()))
        pv.restart_vswitchd()
        if not huge and ovs.huge_dir is None:
            sh("umount", str(pv.hugepage_dir))

    return Lever(
        "other-memory",
        "ovs-vswitchd restarted on the other memory than the lab's: hugepages (dpdk-socket-mem=1024) <-> --no-huge",
        lambda ovs: switch(ovs, ovs.huge_dir is None),
        lambda ovs: switch(ovs, ovs.huge_dir is not None),
    )


def _per_port_memory() -> Lever:
    """``other_config:per-port-memory=true``: a mempool per port sized for its queues instead of OVS's shared one
    (up to 262144 mbufs); DPDK reads it at start, so our ovs-vswitchd restarts on set and on undo."""
    from vhostplug.lab.ovs import PrivateOvs

    def set_(ovs: Ovs, on: bool) -> None:
        if on:
            ovs.vsctl("set", "Open_vSwitch", ".", "other_config:per-port-memory=true")
        else:
            ovs.vsctl("remove", "Open_vSwitch", ".", "other_config", "per-port-memory")
        PrivateOvs(ovs.run_dir).restart_vswitchd()

    return Lever(
        "per-port-memory",
        "other_config:per-port-memory=true (ovs-vswitchd restarted)",
        lambda ovs: set_(ovs, True),
        lambda ovs: set_(ovs, False),
    )


def _port_to_port() -> Lever:
    cookie = "0x7668706c"  # ours, to delete exactly these flows

    def apply(ovs: Ovs) -> None:
        a, b = (ovs.ofport(p) for p in ovs.ports)
        ovs.ofctl("add-flow", f"cookie={cookie},priority=100,in_port={a},actions=output:{b}")
        ovs.ofctl("add-flow", f"cookie={cookie},priority=100,in_port={b},actions=output:{a}")

    def undo(ovs: Ovs) -> None:
        ovs.ofctl("del-flows", f"cookie={cookie}/-1")

    return Lever("port-to-port", "two flows in_port=A,actions=output:B (and back) above NORMAL", apply, undo)


LEVER_TABLE: dict[str, Lever] = {
    lv.name: lv
    for lv in (
        _port_option("tx-retries-max", "0"),
        _port_option("tx-retries-max", "32"),
        _mtu(9000),
        _other_config("emc-insert-inv-prob", "1"),
        _other_config("emc-enable", "false"),
        _other_config("smc-enable", "true"),
        _other_config("tx-flush-interval", "50"),
        _other_config("pmd-rxq-assign", "roundrobin"),
        _port_to_port(),
        _other_memory(),
        _per_port_memory(),
        Lever("in_order", "app vdevs + in_order=1,mrg_rxbuf=0", vdev_suffix=",in_order=1,mrg_rxbuf=0"),
        Lever("mrg_rxbuf=0", "app vdevs + mrg_rxbuf=0", vdev_suffix=",mrg_rxbuf=0"),
    )
}


# -- the loop: one app, io forwarding, packets circulating through the switch ---------------------------------------
def thread_ids(pid: int, prefix: str) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().startswith(prefix):
                out.append(int(task.name))
    return out


@contextlib.contextmanager
def perf_profile(tid: int | None, seconds: float, into: dict[str, Any]) -> Iterator[None]:
    """``perf record -e cpu-clock`` of one thread over the window; its report by object and by symbol into ``into``
    (cpu-clock: this VM exposes no hardware counters, so samples are of the thread's CPU time, not wall time)."""
    if tid is None:
        yield
        return
    data = Path(f"/tmp/dplimit-perf-{tid}.data")
    proc = subprocess.Popen(
        [
            "perf",
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "1999",
            "-t",
            str(tid),
            "-o",
            str(data),
            "--",
            "sleep",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.wait(timeout=seconds + 30)
        for key, sort in (("perf_by_object", "dso"), ("perf_by_symbol", "dso,sym")):
            rep = subprocess.run(
                ["perf", "report", "-i", str(data), "--stdio", "-q", "--sort", sort, "--percent-limit", "0.5"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            into[key] = [" ".join(ln.split()) for ln in rep.splitlines() if ln.strip()][:40]
        data.unlink(missing_ok=True)


class Switch(Protocol):
    """The switch side of a point: opened as the window opens, closed as it closes (its own account)."""

    def open_window(self) -> None: ...

    def close_window(self, seconds: float) -> dict[str, Any]: ...


def thread_cpu_ns(pid: int, tid: int) -> int:
    """CPU time the thread has run (``schedstat``), in ns: preemption by other processes does not count."""
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])


def capacity(cpu_ns: int, busy_fraction: float, packets: int) -> dict[str, Any]:
    """The switch's own cost: CPU ns per forwarded packet in its busy polls, and the rate that cost allows on a core
    of its own. The busy share of the TSC (busy polls / all polls) is applied to the thread's CPU time: preemption
    lands in busy and idle polls alike, so the share holds for CPU time as for wall time."""
    if packets <= 0:
        return {}
    ns = cpu_ns * busy_fraction / packets
    return {
        "switch_cpu_ns": cpu_ns,
        "switch_busy_fraction": round(busy_fraction, 4),
        "switch_ns_per_packet": round(ns, 1),
        "switch_capacity_mpps": round(1e3 / ns, 3) if ns else None,
    }


def loop_rate(
    app: Testpmd,
    switch: Switch,
    frame: int,
    seconds: float,
    warmup: float,
    bursts: int = LOOP_BURSTS,
    profile_tid: int | None = None,
) -> dict[str, Any]:
    """Seed ``bursts`` x 32 packets of ``frame`` bytes per port, io-forward them for ``warmup`` + ``seconds``;
    returns the received rate per direction in the window and the switch's account of the same window. Drains the
    loop after (rxonly) so the next point starts empty. ``profile_tid`` is perf-sampled over the window."""
    macs = [port_mac(app, p) for p in (0, 1)]
    app.cmd("set fwd io")
    app.cmd(f"set txpkts {frame - FCS}")
    app.cmd(f"set eth-peer 0 {macs[1]}")
    app.cmd(f"set eth-peer 1 {macs[0]}")
    load_before = load_average()
    app.cmd(f"start tx_first {bursts}")
    try:
        time.sleep(warmup)
        prof: dict[str, Any] = {}
        with perf_profile(profile_tid, seconds, prof):
            switch.open_window()
            c0 = [port_counters(app, p) for p in (0, 1)]
            t0 = time.monotonic()
            time.sleep(seconds)
            c1 = [port_counters(app, p) for p in (0, 1)]
            dt = time.monotonic() - t0
            sw = switch.close_window(dt)
    finally:
        app.cmd("stop", timeout=20)
    load_after = load_average()
    app.cmd("set fwd rxonly")  # drain: what still circulates is received and freed
    app.cmd("start")
    time.sleep(0.3)
    app.cmd("stop", timeout=20)
    rx = [c1[p][0] - c0[p][0] for p in (0, 1)]
    tx = [c1[p][1] - c0[p][1] for p in (0, 1)]
    return {
        "frame_bytes": frame,
        "seconds": round(dt, 3),
        "rx_per_port": rx,
        "tx_per_port": tx,
        "mpps_per_direction": round(sum(rx) / 2 / dt / 1e6, 4),
        "gbps_per_direction": round(sum(rx) / 2 * frame * 8 / dt / 1e9, 3),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        **sw,
        **prof,
    }


def moved(vdev: str, path: Path) -> str:
    """``vdev`` with its ``path=`` replaced: the same app on a private socket."""
    return re.sub(r"path=[^,]*", f"path={path}", vdev)


@dataclass
class Arm:
    """One arm of the alternation: a name, how to bring up the switch, the app's vdevs."""

    name: str
    lever: Lever | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def limit_forwarder(socks: list[Path], prefix: str, huge_dir: Path | None) -> Testpmd:
    """The no-switch limit: DPDK's vhost PMD on both sockets, io forwarding, on core 1."""
    vdevs = [f"net_vhost{i},iface={s},client=1,queues=1" for i, s in enumerate(socks)]
    # a session of its own, as the daemonized ovs-vswitchd has: with autogroup scheduling, a poller in the bench's
    # session shares one group's weight with the app on core 0 and gets a smaller share of core 1 than OVS's PMD
    return Testpmd(
        vdevs,
        prefix,
        wrap=["setsid"],
        lcores=SWITCH_LCORES,
        memory_mb=256,
        mbufs=16384,
        huge_dir=huge_dir,
        app_args=["--record-core-cycles"],
    )


class Forwarder:
    """The limit's switch side: testpmd's own account (``--record-core-cycles``: TSC cycles of bursts that moved
    packets) and its forwarding thread's CPU time."""

    def __init__(self, fwd: Testpmd) -> None:
        self.fwd = fwd
        self.pid = fwd.pid or 0
        self.tid = thread_ids(self.pid, "rte-worker")[0]
        self.cpu0 = 0

    def open_window(self) -> None:
        self.fwd.cmd("clear fwd stats all")
        self.cpu0 = thread_cpu_ns(self.pid, self.tid)

    def close_window(self, seconds: float) -> dict[str, Any]:
        cpu = thread_cpu_ns(self.pid, self.tid) - self.cpu0
        out = self.fwd.cmd("show fwd stats all")
        m = re.search(r"CPU cycles/packet=([\d.]+) \(total cycles=(\d+) / total io packets=(\d+)\) at (\d+) MHz", out)
        if m is None:
            return {"fwd_stats": out[-800:]}
        busy, packets, mhz = int(m.group(2)), int(m.group(3)), int(m.group(4))
        return {
            "busy_tsc_cycles_per_packet": float(m.group(1)),
            "switch_packets": packets,
            **capacity(cpu, min(1.0, busy / (seconds * mhz * 1e6)), packets),
        }


class OvsPmd:
    """OVS-DPDK's switch side: ``pmd-stats-show`` of the PMD on core 1 and the PMD thread's CPU time."""

    def __init__(self, ovs: Ovs) -> None:
        self.ovs = ovs
        self.pid = ovs.pid
        self.tid = thread_ids(self.pid, "pmd")[0]
        self.cpu0 = 0

    def open_window(self) -> None:
        self.ovs.appctl("dpif-netdev/pmd-stats-clear")
        self.cpu0 = thread_cpu_ns(self.pid, self.tid)

    def close_window(self, seconds: float) -> dict[str, Any]:
        cpu = thread_cpu_ns(self.pid, self.tid) - self.cpu0
        out = self.ovs.appctl("dpif-netdev/pmd-stats-show").split("main thread")[0]

        def num(label: str) -> float:
            m = re.search(label + r":\s+([\d.]+)", out)
            return float(m.group(1)) if m else -1.0

        idle = re.search(r"idle cycles: \d+ \(([\d.]+)%\)", out)
        idle_pct = float(idle.group(1)) if idle else 0.0
        packets = int(num("packets received"))
        pt = {
            "busy_tsc_cycles_per_packet": num("avg processing cycles per packet"),
            "switch_packets": packets,
            "emc_hits": int(num("emc hits")),
            "simple_match_hits": int(num("simple match hits")),
            "megaflow_hits": int(num("megaflow hits")),
            "pkts_per_output_batch": num("avg. packets per output batch"),
            **capacity(cpu, 1 - idle_pct / 100, packets),
        }
        if PROFILE:
            pt["pmd_perf_show"] = self.ovs.appctl("dpif-netdev/pmd-perf-show")
        return pt


def summarize(points: list[dict[str, Any]], frames: list[int]) -> dict[str, Any]:
    """Median per arm and frame, and each arm as a percentage of the limit (medians; and per alternation)."""
    arms = list(dict.fromkeys(p["arm"] for p in points))
    out: dict[str, Any] = {}
    for frame in frames:
        row: dict[str, Any] = {}
        for arm in arms:
            v = [p["mpps_per_direction"] for p in points if p["arm"] == arm and p["frame_bytes"] == frame]
            if v:
                ns = [
                    p["switch_ns_per_packet"]
                    for p in points
                    if p["arm"] == arm and p["frame_bytes"] == frame and p.get("switch_ns_per_packet")
                ]
                row[arm] = {"mpps_median": round(statistics.median(v), 4), "mpps_min": min(v), "mpps_max": max(v)}
                if ns:
                    row[arm]["switch_ns_per_packet_median"] = round(statistics.median(ns), 1)
                    row[arm]["switch_capacity_mpps"] = round(1e3 / statistics.median(ns), 3)
        lim = row.get("limit", {}).get("mpps_median")
        if lim:
            for arm in arms:
                if arm != "limit" and arm in row:
                    row[arm]["pct_of_limit"] = round(100 * row[arm]["mpps_median"] / lim, 1)
                    cap, lcap = row[arm].get("switch_capacity_mpps"), row["limit"].get("switch_capacity_mpps")
                    if cap and lcap:
                        row[arm]["capacity_pct_of_limit"] = round(100 * cap / lcap, 1)
                    # per alternation: arm / the limit measured next to it
                    pairs = []
                    for alt in sorted({p["alternation"] for p in points}):
                        a = [
                            p
                            for p in points
                            if p["arm"] == arm and p["frame_bytes"] == frame and p["alternation"] == alt
                        ]
                        lm = [
                            p
                            for p in points
                            if p["arm"] == "limit" and p["frame_bytes"] == frame and p["alternation"] == alt
                        ]
                        if a and lm:
                            pairs.append(round(100 * a[0]["mpps_per_direction"] / lm[0]["mpps_per_direction"], 1))
                    row[arm]["pct_of_limit_per_alternation"] = pairs
        out[str(frame)] = row
    return out


AppFactory = Callable[[list[str], str], "contextlib.AbstractContextManager[Testpmd]"]


def run_arms(
    ovs: Ovs,
    app_vdevs: list[str],
    sock_dir: Path,
    frames: list[int],
    seconds: float,
    warmup: float,
    start_app: AppFactory,
    prefix: Callable[[str], str],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The alternation: limit, vhost-user, then each lever, ALTERNATIONS times; one point per arm and frame."""
    arms = [Arm("limit"), Arm("vhost-user"), *(Arm(f"vhost-user+{n}", LEVER_TABLE[n]) for n in LEVERS)]
    points: list[dict[str, Any]] = []
    if PROFILE:
        ovs.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-perf-metrics=true")
    for alt in range(ALTERNATIONS):
        for arm in arms:
            tag = f"x{alt}{arms.index(arm)}"
            if arm.name == "limit":
                socks = [sock_dir / f"{tag}-{i}.sock" for i in range(len(app_vdevs))]
                vdevs = [moved(v, s) for v, s in zip(app_vdevs, socks, strict=True)]
                with ovs.paused():
                    pmd0 = ovs.pmd_cpu_seconds()
                    fwd = limit_forwarder(socks, prefix(f"{tag}f"), ovs.huge_dir)
                    try:
                        fwd.start(timeout=60)
                        fwd.cmd("set fwd io")
                        fwd.cmd("start")
                        with start_app(vdevs, tag) as app:
                            side = Forwarder(fwd)
                            for frame in frames:
                                tid = side.tid if PROFILE and frame == frames[0] else None
                                pt = loop_rate(app, side, frame, seconds, warmup, profile_tid=tid)
                                pt["ovs_pmd_cpu_s"] = round(ovs.pmd_cpu_seconds() - pmd0, 2)
                                points.append({"arm": arm.name, "alternation": alt, **pt})
                                log(f"  alt {alt + 1} {arm.name:28} {frame:5} B {pt['mpps_per_direction']:.3f} Mpps")
                    finally:
                        fwd.stop()
                        for s in socks:
                            s.unlink(missing_ok=True)
                continue
            lever = arm.lever
            vdevs = [v + lever.vdev_suffix for v in app_vdevs] if lever else list(app_vdevs)
            if lever:
                lever.apply(ovs)
            try:
                ovs.appctl("fdb/flush", ovs.bridge)
                with start_app(vdevs, tag) as app:
                    ovs.wait_rxqs_enabled()
                    pmd = OvsPmd(ovs)
                    for frame in frames:
                        tid = pmd.tid if PROFILE and frame == frames[0] else None
                        pt = loop_rate(app, pmd, frame, seconds, warmup, profile_tid=tid)
                        points.append({"arm": arm.name, "alternation": alt, **pt})
                        log(f"  alt {alt + 1} {arm.name:28} {frame:5} B {pt['mpps_per_direction']:.3f} Mpps")
            finally:
                if lever:
                    lever.undo(ovs)
    return points
