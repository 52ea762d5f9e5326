"""Live migration between lab nodes, as KubeVirt does it (or within one node, for comparison in the same lab).

The VM's source virt-launcher pod runs on the source node, a target virt-launcher pod is made on the target node
(its device from that node's device plugin, its port from that node's agent through its CNI shim), both QEMUs name
the same stable socket path, each inside its own mount namespace, and QEMU migrates over a unix socket. The guest
pings a third pod (testpmd ``icmpecho``, on the peer node) every ``interval`` seconds; the gap is the longest host-
timestamped silence between two replies. Once the target runs, the source pod goes away: its QEMU quits and its CNI
DEL runs through the source node's shim. With ``timeline=True`` one run also records :mod:`.timeline`.

The VM's MAC is the VMI's (``vm_mac``): both pods' CNI ADDs ask for it (``runtimeConfig.mac``, as Multus passes the
MAC KubeVirt puts in the network selection of a VMI interface that names one), so both ports' records carry it and
each node's agent makes its switch forget it when the source port's link goes down and the target's comes up
(:mod:`vhostplug.dataplane.macforget`: OVS moves a MAC learned by a PMD without waking the thread that re-points the
datapath flows). Tuning kept here (what the lab's "sidecar" asks of QEMU): ``announce`` sets the target's
self-announce parameters (``announce-initial/-max/-rounds/-step``, ms) before the stream comes in.
``target_nice``: the target QEMU's threads run at this nice value from just before the migration, the lab's stand-in
for the dedicated CPU a KubeVirt VM with DPDK networking gets. Here every core also runs a busy-polling thread
(testpmd, the PMDs) and the resumed TCG guest must translate its code anew: at an equal share its vCPU waited for a
CPU longer than it ran between RESUME and its first reply (the timeline's schedstat row). 0 leaves it as the rest.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.migration import MigrationError
from vhostplug.lab.migration.counters import port_counters
from vhostplug.lab.migration.launcher import LaunchedPod, NodeQemu, wait_port_gone
from vhostplug.lab.migration.pings import PingWatch
from vhostplug.lab.migration.scenario import migrate
from vhostplug.lab.migration.timeline import NodeWatch, Timeline, fdb_port
from vhostplug.lab.multus import IFNAME
from vhostplug.model import mac_for

#: the lab VM subnet's host-local range per node (each node its own range: two nodes never hand out one IP twice)
VM_SUBNET = "10.57.0.0/24"

#: QEMU's defaults are initial 50, max 550, rounds 5, step 100 (ms): the first announce waits 50 ms after resume
FAST_ANNOUNCE = {"announce-initial": 1, "announce-max": 100, "announce-rounds": 5, "announce-step": 20}


def node_range(ctx: DemoContext) -> tuple[str, str]:
    """The host-local range of ``ctx``'s node in :data:`VM_SUBNET`: node-a .10-.99, node-b .110-.199."""
    base = 110 if ctx.run_dir.name.endswith("-b") else 10
    return f"10.57.0.{base}", f"10.57.0.{base + 89}"


@dataclass
class CrossNodeMigration:
    """One VM migrated from ``source`` to ``target`` (DemoContexts of lab nodes with their kubelets started)."""

    source: DemoContext
    target: DemoContext
    peer_node: DemoContext
    root: Path
    unique: str
    interval: float = 0.02
    announce: dict[str, int] | None = None
    guest_announce: bool = True
    target_nice: int = -10
    pods: dict[str, LaunchedPod] = field(default_factory=dict)
    vms: dict[str, NodeQemu] = field(default_factory=dict)
    testpmd: Any = None
    watch: PingWatch | None = None

    @property
    def vm_mac(self) -> str:
        """The VMI interface's MAC, which both virt-launcher pods' CNI ADDs ask for."""
        return mac_for(f"vmi-{self.unique}", IFNAME)

    def _pod(self, key: str, ctx: DemoContext, mac: str = "") -> LaunchedPod:
        pod = LaunchedPod(ctx, f"mig-{key}-{self.unique}", VM_SUBNET, ip_range=node_range(ctx), mac_request=mac)
        self.pods[key] = pod
        return pod.create()

    def boot(self, timeout: float = 120.0) -> None:
        """Peer pod answering pings, source VM booted and pinging, target pod + QEMU waiting for the stream."""
        from vhostplug.lab.testpmd import Testpmd
        from vhostplug.lab.vms import Console

        peer = self._pod("peer", self.peer_node)
        prefix = f"vhpm{self.unique}"
        self.peer_node.state.add("testpmd_prefixes", prefix)
        self.testpmd = Testpmd([f"net_virtio_user0,path={peer.socket},server=1"], file_prefix=prefix)
        self.testpmd.start()
        self.testpmd.cmd("set fwd icmpecho")
        self.testpmd.wait_link_up(timeout=30)
        self.testpmd.cmd("start")
        src = self._pod("src", self.source, self.vm_mac)
        cmdline = f"vhp.ip={src.ip} vhp.peer={peer.ip.split('/')[0]} vhp.interval={self.interval}"
        links = self.root / "links"
        self.vms["src"] = NodeQemu(
            f"vhp-src-{self.unique}",
            self.root / "src",
            links,
            self.vm_mac,
            cmdline,
            socket=src.socket,
            guest_announce=self.guest_announce,
        )
        self.vms["src"].start()
        self.vms["src"].connect_qmp()
        self.watch = PingWatch([self.root / k / "console.log" for k in ("src", "dst")]).start()
        Console(self.vms["src"].console_log).wait_for(r"VHP-PING-OK", timeout)
        dst = self._pod("dst", self.target, self.vm_mac)
        vm = NodeQemu(
            f"vhp-dst-{self.unique}",
            self.root / "dst",
            links,
            self.vm_mac,
            cmdline,
            incoming=True,
            socket=dst.socket,
            guest_announce=self.guest_announce,
        )
        self.vms["dst"] = vm
        vm.start()
        vm.connect_qmp()
        for v in self.vms.values():
            v.execute("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
        if self.announce:
            vm.execute("migrate-set-parameters", **self.announce)

    def run(self, uri: str, timeline: bool = False, settle: float = 1.0) -> dict[str, Any]:
        """Migrate while pinging; the source pod is deleted once the target runs. Figures (and the timeline)."""
        if self.watch is None:
            raise MigrationError("boot() first")
        src_vm, dst_vm = self.vms["src"], self.vms["dst"]
        src_pod = self.pods["src"]
        src_port = src_pod.port
        t0 = time.monotonic()
        self.watch.wait_replies(10, t0, 30)
        tl = None
        if timeline:
            tl = Timeline(
                [self._agent_watch(ctx) for ctx in _unique_nodes(self.source, self.target, self.peer_node)],
                qemu_pid=dst_vm.pid,
            ).start()
            time.sleep(0.3)  # the pollers take their baselines
        agents = [self._agent_watch(ctx) for ctx in _unique_nodes(self.source, self.target)]
        for w in agents:
            w.mark_agent_log()
        if self.target_nice and dst_vm.pid is not None:
            for tid in os.listdir(f"/proc/{dst_vm.pid}/task"):  # threads made later inherit it
                with contextlib.suppress(ProcessLookupError):
                    os.setpriority(os.PRIO_PROCESS, int(tid), self.target_nice)
        res = migrate(src_vm, dst_vm, uri)
        if (status := src_vm.status()) != "postmigrate":
            raise MigrationError(f"source is {status!r} after the migration, not postmigrate")
        t_del = time.monotonic()
        src_vm.stop()
        deleted = src_pod.delete()
        wait_port_gone(self.source, src_port)
        t_gone = time.monotonic()
        try:
            self.watch.wait_replies(10, time.monotonic(), 30)
        except MigrationError as exc:  # whose silence: the guest's (sends nothing) or the network's (no replies back)
            raise MigrationError(f"{exc}; {self._where_silent()}") from None
        time.sleep(settle)
        end = time.monotonic()
        gap, lost, since = self.watch.max_gap_at(res.started, end)
        offset = time.time() - time.monotonic()
        stop = next((wall - offset for ev, wall, _m in src_vm.events() if ev == "STOP"), res.completed)
        from_vm, to_vm = self._target_port_packets()
        out: dict[str, Any] = {
            "source_node": self.source.run_dir.name,
            "target_node": self.target.run_dir.name,
            "gap_ms": round(gap * 1000, 1),
            "lost_replies": lost,
            # where the longest silence began, from the source's STOP (negative: the source guest fell silent during
            # the precopy, before the switch-over)
            "gap_began_ms_after_stop": round((since - stop) * 1000, 1),
            "qemu_downtime_ms": res.qmp_downtime_ms,
            "qemu_total_ms": res.qmp_total_ms,
            "migration_s": round(res.completed - res.started, 3),
            "source_del_ms_after_completed": round((t_gone - res.completed) * 1000, 1),
            "interval_s": self.interval,
            "announce": self.announce or "QEMU defaults",
            "guest_announce": self.guest_announce,
            "vm_mac": self.vm_mac,
            # the agents' forgetting of the VM's MAC (ms from the source's STOP), and the target port's packets since
            # the VM resumed there (from it: QEMU's 5 RARP announces + the guest's frames), beside the replies it saw
            "agents": [
                {"ms": round((t - stop) * 1000, 1), "node": w.node, "what": what}
                for w in agents
                for t, what in sorted(w.agent_events())
            ],
            "target_port_packets": {"from_vm": from_vm, "to_vm": to_vm},
            "replies_after_stop": self.watch.count_since(stop),
            "target_nice": self.target_nice,
            "deleted": deleted,
        }
        if tl is not None:
            tl.stop()
            out["timeline"] = self._timeline(tl, src_vm, dst_vm, res.started, res.completed, t_del, t_gone)
        return out

    def _target_port_packets(self) -> tuple[int, int]:
        """The target port's packets from the VM and to it as OVS counts them now; (-1, -1) when it is not listed."""
        counters = port_counters(self.target.paths.ovs_dir, self.target.names.bridge("v"))
        return counters.get(self.pods["dst"].port, (-1, -1))

    def _agent_watch(self, ctx: DemoContext) -> NodeWatch:
        return NodeWatch(ctx.run_dir.name, ctx.paths.ovs_dir, ctx.names.bridge("v"), self.vm_mac, ctx.paths.agent_log)

    def _where_silent(self) -> str:
        """What a silent run's error says: the guest kernel's complaints on the target's console (seen: its virtio-net
        driver finding a used-ring entry it never made, ``output.0:id 0 is not a head!``, then ping stuck in a soft
        lockup), the target port's counters, and where each node's switch has the VM's MAC."""
        said = []
        with contextlib.suppress(OSError):
            text = self.vms["dst"].console_log.read_text(errors="replace")
            said += [ln.strip() for ln in text.splitlines() if re.search(r"virtio|BUG|lockup|Call Trace", ln)][:4]
        try:
            rx, tx = self._target_port_packets()
            said.append(f"target port {self.pods['dst'].port}: {rx} packets from the VM, {tx} to it")
        except MigrationError as exc:
            said.append(str(exc))
        for ctx in _unique_nodes(self.source, self.target, self.peer_node):
            where = fdb_port(ctx.paths.ovs_dir, ctx.names.bridge("v"), self.vm_mac)
            said.append(f"{ctx.run_dir.name} has the VM's MAC behind {where or 'no port'}")
        return ", ".join(said)

    def _timeline(
        self, tl: Timeline, src: NodeQemu, dst: NodeQemu, started: float, completed: float, t_del: float, t_gone: float
    ) -> list[dict[str, object]]:
        assert self.watch is not None
        offset = time.time() - time.monotonic()
        stop_at = resume_at = started
        for name, vm in (("source", src), ("target", dst)):
            for ev, wall, msg in vm.events():
                status = msg.get("data", {}).get("status", "")
                tl.add(wall - offset, f"QEMU {name}: {ev}{' ' + status if status else ''}")
                if name == "source" and ev == "STOP":
                    stop_at = wall - offset
                if name == "target" and ev == "RESUME":
                    resume_at = wall - offset
        tl.add(started, "migrate command sent")
        tl.add(completed, "query-migrate says completed")
        tl.add(t_del, "source QEMU quit, CNI DEL of the source pod starts")
        tl.add(t_gone, "source port gone from the source node's OVSDB")
        replies = self.watch.snapshot()
        before = [t for t, _ in replies if t <= stop_at]
        after = [t for t, _ in replies if t > resume_at]  # a reply read just after the STOP is the source's
        if before:
            tl.add(before[-1], "last ping reply before the stop (serial console)")
        if after:
            first = next(seq for t, seq in replies if t == after[0])
            rtt = self.watch.rtt_ms.get(first)
            said = f"; its round trip as the guest measured it: {rtt:.1f} ms" if rtt is not None else ""
            tl.add(after[0], f"first ping reply after the target's RESUME (serial console{said})")
            cpu = tl.cpu_between(resume_at, after[0])
            if cpu is not None:
                tl.add(
                    after[0],
                    f"target QEMU from its RESUME to here: vCPU thread {cpu[0]:.0f} ms on a CPU, {cpu[1]:.0f} ms "
                    f"runnable but waiting for one; all its threads {cpu[2]:.0f} / {cpu[3]:.0f} ms",
                )
        sockets = {"target": str(self.pods["dst"].socket), "peer": str(self.pods["peer"].socket)}
        return tl.rows(sockets, stop_at)

    def close(self) -> list[str]:
        """Everything this migration made, in reverse; never raises."""
        done: list[str] = []
        if self.watch is not None:
            self.watch.stop()
        for vm in self.vms.values():
            with contextlib.suppress(Exception):
                vm.stop()
                done.append(f"stopped {vm.name}")
        if self.testpmd is not None:
            with contextlib.suppress(Exception):
                self.testpmd.stop()
                done.append("stopped testpmd")
        for pod in reversed(list(self.pods.values())):
            done += pod.delete()
        return done


def _unique_nodes(*ctxs: DemoContext) -> list[DemoContext]:
    out: list[DemoContext] = []
    for c in ctxs:
        if all(c.run_dir != o.run_dir for o in out):
            out.append(c)
    return out
