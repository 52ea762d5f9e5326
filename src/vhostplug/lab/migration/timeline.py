"""The timeline of one lab live migration: what happened when, on the host's monotonic clock, so a ping gap is
explained and not only measured.

Sources: QMP events with QEMU's own timestamps (source ``STOP``, target ``RESUME``, migration states), each node's
ovs-vswitchd log (the target's vhost-user negotiation, its queues enabled, the PMD's rx queue assignment), and, while
armed, one poller thread per node reading live OpenFlow port counters (first packet into OVS from the target port, from
the uplink), a RARP flow counter (QEMU's announce) and ``fdb/show`` (where each bridge has learned the VM's MAC).
Pollers fork ``ovs-ofctl``/``ovs-appctl`` continuously: a timed run is a little slower than an untimed one, and their
requests wake ovs-vswitchd's main thread. While armed, each node's ``dpif_netdev`` module also logs at debug level,
which stamps (to the ms, no polling) the datapath's first IP packet from the VM and the revalidator re-pointing the
flows toward the VM from one port to another (:meth:`NodeWatch.flow_events`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vhostplug.dataplane import vswitchd
from vhostplug.lab.migration.counters import port_counters

#: a flow as NORMAL as the bridge's own, whose counter sees RARP frames (QEMU's self-announce for vhost-user)
RARP_FLOW = "priority=65000,dl_type=0x8035,actions=NORMAL"

_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z\|")
_LOG_KEYS = (
    ("vhost-user connected", re.compile(r"new device|vHost User device '.*' creation")),
    ("virtio features negotiated", re.compile(r"negotiated Virtio features")),
    ("vhost device ready (virtio ready for processing)", re.compile(r"virtio is now ready|has been added on numa")),
    ("vhost queue enabled", re.compile(r"changed to 'enabled'")),
    ("rx queue assigned to a PMD", re.compile(r"assigned port '.*' rx queue|Core \d+ on numa node \d+ assigned")),
    ("vhost device removed", re.compile(r"has been removed|Vhost user socket .* disconnected|connection closed")),
)


_AGENT_FORGOT = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*port (\S+) link (\w+): bridge \S+ forgot MAC ([0-9a-f:]+)( again)?"
)
_FLOW_ADD = re.compile(r"flow_add: .*?in_port\((\d+)\).*?eth\(src=([0-9a-f:]+),dst=[0-9a-f:]+\),eth_type\(0x0800\)")
_FLOW_MOD = re.compile(r"flow_mod: .*?eth\(src=[0-9a-f:]+,dst=([0-9a-f:]+)\).*?old_actions:(\S+), actions:(\S+)")
_DP_PORT = re.compile(r"^\s+(\S+) (?:\d+|LOCAL)/(\d+):", re.M)


def _ofctl(ovs_dir: Path, bridge: str, *args: str) -> str:
    proc = subprocess.run(
        ["ovs-ofctl", *args[:1], f"unix:{ovs_dir / (bridge + '.mgmt')}", *args[1:]],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return proc.stdout


def add_rarp_flow(ovs_dir: Path, bridge: str) -> None:
    _ofctl(ovs_dir, bridge, "add-flow", RARP_FLOW)


def rarp_packets(ovs_dir: Path, bridge: str) -> int:
    m = re.search(r"n_packets=(\d+)", _ofctl(ovs_dir, bridge, "dump-flows", "dl_type=0x8035"))
    return int(m.group(1)) if m else 0


def _read_from(path: Path, offset: int) -> str:
    """``path``'s text from byte ``offset`` on ("" when it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def fdb_port(ovs_dir: Path, bridge: str, mac: str) -> str | None:
    """The port number (OpenFlow) behind which ``bridge`` has learned ``mac``, or None."""
    proc = subprocess.run(
        ["ovs-appctl", "-t", str(ovs_dir / "ovs-vswitchd.ctl"), "fdb/show", bridge],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].lower() == mac.lower():
            return parts[0]
    return None


def ofport_names(ovs_dir: Path, bridge: str) -> dict[str, str]:
    out = _ofctl(ovs_dir, bridge, "show")
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+)\((\S+)\):", out, re.M)}


@dataclass
class NodeWatch:
    """What one node's poller watches: its OVS folder, VM bridge and the VM's MAC."""

    node: str
    ovs_dir: Path
    bridge: str
    mac: str
    #: the node agent's log: when its switch forgot the VM's MAC on a port's link change (vhostplug.dataplane.macforget)
    agent_log: Path | None = None
    events: list[tuple[float, str]] = field(default_factory=list)
    log_offset: int = 0
    agent_offset: int = 0
    dp_ports: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.ovs_dir / "ovs-vswitchd.log"

    def arm(self) -> None:
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        self.mark_agent_log()
        add_rarp_flow(self.ovs_dir, self.bridge)
        show, _debug = vswitchd.call(self.ovs_dir, [["dpif/show"], ["vlog/set", "dpif_netdev:file:dbg"]], timeout=10)
        self.dp_ports = {n: name for name, n in _DP_PORT.findall(str(show.get("result") or ""))}

    def disarm(self) -> None:
        vswitchd.call(self.ovs_dir, [["vlog/set", "dpif_netdev:file:info"]], timeout=10)

    def _since_arm(self) -> str:
        return _read_from(self.log, self.log_offset)

    def flow_events(self) -> list[tuple[float, str]]:
        """From the ``dpif_netdev`` debug lines: the datapath's first IP packet from the VM (its upcall: the guest is
        sending, and from which port), and each time the flows toward the VM are re-pointed (old -> new ports)."""
        offset = time.time() - time.monotonic()
        out: list[tuple[float, str]] = []
        first_ip = False
        for line in self._since_arm().splitlines():
            m = _LOG_TS.match(line)
            if not m or ("flow_add" not in line and "flow_mod" not in line):
                continue
            when = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC).timestamp() - offset
            add, mod = _FLOW_ADD.search(line), _FLOW_MOD.search(line)
            if add and not first_ip and add.group(2).lower() == self.mac.lower():
                first_ip = True
                out.append((when, f"first IP packet from the VM into the datapath, from {self._port(add.group(1))}"))
            elif mod and mod.group(1).lower() == self.mac.lower() and mod.group(2) != mod.group(3):
                out.append(
                    (
                        when,
                        f"flows toward the VM re-pointed: {self._port(mod.group(2))} -> "
                        f"{self._port(mod.group(3))} (revalidator)",
                    )
                )
        return out

    def mark_agent_log(self) -> None:
        """:meth:`agent_events` reads the agent's log from here on."""
        if self.agent_log is not None and self.agent_log.exists():
            self.agent_offset = self.agent_log.stat().st_size

    def agent_events(self) -> list[tuple[float, str]]:
        """The node agent's forgetting of the VM's MAC since :meth:`arm` (stamped by the agent to the ms, once done)."""
        if self.agent_log is None:
            return []
        text = _read_from(self.agent_log, self.agent_offset)
        offset = time.time() - time.monotonic()
        out: list[tuple[float, str]] = []
        for m in filter(None, map(_AGENT_FORGOT.match, text.splitlines())):
            if m.group(4).lower() == self.mac.lower():
                when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - offset  # local time
                out.append(
                    (
                        when,
                        f"agent: port {m.group(2)} link {m.group(3)}, its MAC forgotten by the switch{m.group(5) or ''}",
                    )
                )
        return out

    def _port(self, numbers: str) -> str:
        return ",".join(self.dp_ports.get(n, n) for n in numbers.split(","))

    def poll(self, stop: threading.Event) -> None:
        names = ofport_names(self.ovs_dir, self.bridge)
        rx0 = {p: c[0] for p, c in port_counters(self.ovs_dir, self.bridge).items()}
        rarp0 = rarp_packets(self.ovs_dir, self.bridge)
        fdb0 = fdb_port(self.ovs_dir, self.bridge, self.mac)
        seen_rx: set[str] = set()
        rarp_seen, fdb_last = False, fdb0
        while not stop.is_set():
            for port, (rx, _tx) in port_counters(self.ovs_dir, self.bridge).items():
                if port not in seen_rx and rx > rx0.get(port, 0):
                    seen_rx.add(port)
                    self.events.append((time.monotonic(), f"first packet into OVS from port {port}"))
                rx0.setdefault(port, rx)
            if not rarp_seen and rarp_packets(self.ovs_dir, self.bridge) > rarp0:
                rarp_seen = True
                self.events.append((time.monotonic(), "RARP (announce) seen on the bridge"))
            where = fdb_port(self.ovs_dir, self.bridge, self.mac)
            if where != fdb_last:
                names = ofport_names(self.ovs_dir, self.bridge) if where not in names else names
                what = f"VM MAC learned behind {names.get(where, where)}" if where else "VM MAC forgotten"
                self.events.append((time.monotonic(), what))
                fdb_last = where

    def log_events(self, sockets: dict[str, str]) -> list[tuple[float, str]]:
        """The first line of each kind in this node's ovs-vswitchd log since :meth:`arm`, per socket of interest."""
        text = self._since_arm()
        offset = time.time() - time.monotonic()
        found: dict[str, float] = {}
        for line in text.splitlines():
            m = _LOG_TS.match(line)
            if not m:
                continue
            who = next((label for label, sock in sockets.items() if sock in line), None)
            if who is None and "assigned" not in line:
                continue
            for key, rx in _LOG_KEYS:
                label = f"{key} ({who})" if who else key
                if label not in found and rx.search(line):
                    wall = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC)
                    found[label] = wall.timestamp() - offset
        return [(t, f"ovs-vswitchd: {label}") for label, t in found.items()]


def cpu_ns(pid: int) -> tuple[int, int, int, int]:
    """Process ``pid``'s ns on a CPU and ns runnable but waiting for one (``/proc/*/schedstat``): its vCPU threads
    (named ``CPU n/...``), then all of its threads."""
    out = [0, 0, 0, 0]
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0, 0, 0
    for tid in tids:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            vcpu = Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith("CPU ")
        except OSError:
            continue
        run, wait = int(fields[0]), int(fields[1])
        out[2], out[3] = out[2] + run, out[3] + wait
        if vcpu:
            out[0], out[1] = out[0] + run, out[1] + wait
    return out[0], out[1], out[2], out[3]


class Timeline:
    """Arm before the migration, :meth:`stop` after the first replies; :meth:`rows` is the ordered timeline.
    ``qemu_pid``: the target QEMU, whose CPU time and wait for a CPU are sampled every 5 ms (:meth:`cpu_between`)."""

    def __init__(self, watches: list[NodeWatch], qemu_pid: int | None = None) -> None:
        self.watches = watches
        self.qemu_pid = qemu_pid
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.extra: list[tuple[float, str]] = []
        self.cpu: list[tuple[float, int, int, int, int]] = []

    def start(self) -> Timeline:
        for w in self.watches:
            w.arm()
            t = threading.Thread(target=w.poll, args=(self._stop,), daemon=True)
            t.start()
            self._threads.append(t)
        if self.qemu_pid is not None:
            t = threading.Thread(target=self._sample_cpu, args=(self.qemu_pid,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _sample_cpu(self, pid: int) -> None:
        while not self._stop.wait(0.005):
            self.cpu.append((time.monotonic(), *cpu_ns(pid)))

    def cpu_between(self, t0: float, t1: float) -> tuple[float, float, float, float] | None:
        """The sampled QEMU's ms on a CPU and ms waiting for one between the samples nearest ``t0`` and ``t1``: its
        vCPU threads, then all of its threads."""
        inside = [c for c in self.cpu if t0 <= c[0] <= t1]
        if len(inside) < 2:
            return None
        first, last = inside[0], inside[-1]
        d = [(b - a) / 1e6 for a, b in zip(first[1:], last[1:], strict=True)]
        return d[0], d[1], d[2], d[3]

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=20)
        for w in self.watches:
            w.disarm()

    def add(self, when: float, what: str) -> None:
        self.extra.append((when, what))

    def rows(self, sockets: dict[str, str], zero: float) -> list[dict[str, object]]:
        """Every event as ``{"ms": since zero, "node", "what"}``, in time order."""
        rows: list[tuple[float, str, str]] = [(t, "-", what) for t, what in self.extra]
        for w in self.watches:
            rows += [
                (t, w.node, what) for t, what in w.events + w.log_events(sockets) + w.flow_events() + w.agent_events()
            ]
        return [{"ms": round((t - zero) * 1000, 1), "node": n, "what": what} for t, n, what in sorted(rows)]
