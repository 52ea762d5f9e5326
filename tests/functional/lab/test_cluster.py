"""The two-node lab: two whole nodes on one machine (own OVS-DPDK, agent, kubelet, bridges), joined by an uplink per
network; a testpmd pod on each node sends to the other across it, a VM live-migrates from node a to node b (target
pod made by node b's device plugin and agent, source pod's DEL on node a), and `down` leaves nothing of either node.
The tests share one two-node lab (module scope); the last one takes it down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import require_root
from tests.functional.kubevirt.test_live_migration import (
    SILENT_AFTER_SWITCHOVER,
    ToleratedFlake,
    guest_broke_after_switchover,
)
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab import cluster
from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_cross import run_cross_node
from vhostplug.lab.demo_node import start_kubelet, stop_kubelet
from vhostplug.lab.demo_state import Names
from vhostplug.lab.migration import MigrationError
from vhostplug.lab.migration.crossnode import CrossNodeMigration
from vhostplug.lab.paths import LabPaths
from vhostplug.lab.report import Progress


@pytest.fixture(scope="module")
def lab() -> Iterator[Path]:
    require_root()
    d = Path(tempfile.mkdtemp(prefix="vhp-2n-", dir="/tmp"))  # short: unix socket paths stay < 108 bytes
    try:
        yield d
    finally:
        cluster.cluster_down(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def ctxs(lab: Path) -> Iterator[tuple[DemoContext, DemoContext]]:
    """Both nodes up and joined, each with its lab kubelet (the device plugin registered)."""
    cluster.cluster_up(lab, nodes=2)
    progress = Progress(Console(quiet=True))
    ctx_a, ctx_b = (DemoContext(d, progress) for d in cluster.nodes_of(lab))
    try:
        for ctx in (ctx_a, ctx_b):
            start_kubelet(ctx)
            ctx.ovs_endpoint = f"unix:{ctx.paths.ovs_dir / 'db.sock'}"
        yield ctx_a, ctx_b
    finally:
        for ctx in (ctx_a, ctx_b):
            stop_kubelet(ctx)


def _uplink_packets(node: Path, port: str) -> tuple[int, int]:
    endpoint = f"unix:{LabPaths(node).ovs_dir / 'db.sock'}"
    (row,) = ovsdb_rpc.select(endpoint, "Interface", where=[["name", "==", port]], columns=["statistics"])
    stats = ovsdb_rpc.ovs_map(row["statistics"])
    return int(stats.get("rx_packets", 0)), int(stats.get("tx_packets", 0))


@pytest.mark.root
def test_two_nodes_pods_talk_across_the_uplink(lab: Path, ctxs: tuple[DemoContext, DemoContext]) -> None:
    status = cluster.cluster_status(lab)
    a, b = cluster.nodes_of(lab)
    nodes = status["nodes"]
    assert [n["node"] for n in nodes] == ["node-a", "node-b"]
    # nothing shared between the nodes: own OVSDB, DPDK prefix, agent, socket root, bridges
    for key in ("ovsdb", "file_prefix", "agent_socket", "socket_root", "device_plugin_dir"):
        assert nodes[0][key] != nodes[1][key], key
    # device-info is where real nodes keep it, one folder per machine: the nodes' device IDs keep their files apart
    assert nodes[0]["devinfo_dir"] == nodes[1]["devinfo_dir"] == "/var/run/k8s.cni.cncf.io/devinfo"
    prefixes = {
        json.loads(LabPaths(n).agent_config.read_text())["devicePlugin"]["vhostuser"]["idPrefix"] for n in (a, b)
    }
    assert len(prefixes) == 2
    assert not set(nodes[0]["bridges"]) & set(nodes[1]["bridges"])
    assert all(n["dpdk_initialized"] and n["pid_agent"] for n in nodes)
    for node in (a, b):  # each agent's policy and OVS are its own node's only
        conf = json.loads(LabPaths(node).agent_config.read_text())
        assert conf["dataplane"]["ovsdb"] == f"unix:{LabPaths(node).ovs_dir / 'db.sock'}"
        assert all(str(node) in conf[k] for k in ("listen", "socketRoot", "stateDir"))
    assert all(end["present"] for up in status["uplinks"] for end in up["ends"])
    assert cluster.cluster_up(lab, nodes=2)["uplinks"] == status["uplinks"]  # up again: harmless

    cross = run_cross_node(*ctxs)
    assert cross["mpps_a_to_b"] > 0.01 and cross["mpps_b_to_a"] > 0.01, cross
    for flow in cross["flows"]:
        assert flow["received"] > 0
    # the packets crossed the uplink: node a's end sent and received at least what the flows counted
    # (OVS publishes interface statistics every 5 s: wait for the reading that covers the flows)
    end_a, end_b = cluster.uplink_ends(lab, "p")
    received = {f["receiver"]: f["received"] for f in cross["flows"]}
    deadline = time.monotonic() + 15
    while True:
        (rx_a, tx_a), (rx_b, tx_b) = _uplink_packets(a, end_a), _uplink_packets(b, end_b)
        crossed = min(tx_a, rx_b) >= received["cross-y"] and min(tx_b, rx_a) >= received["cross-x"]
        if crossed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert crossed, (rx_a, tx_a, rx_b, tx_b, received)


@pytest.mark.root
def test_a_vm_migrates_from_node_a_to_node_b(
    lab: Path, ctxs: tuple[DemoContext, DemoContext], short_dir: Path, unique: str
) -> None:
    """KubeVirt's way across nodes: node b's device plugin and agent make the target pod's device and port, the guest
    keeps answering through node b's OVS, then the source pod's DEL on node a removes its port and record."""
    ctx_a, ctx_b = ctxs
    before = [_records(ctx) for ctx in ctxs]  # the cross-node pods' (removed at down)
    silent: list[str] = []
    for attempt in range(2):  # the one tolerated flake of test_live_migration.py (its SILENT_AFTER_SWITCHOVER)
        root = short_dir / str(attempt)
        root.mkdir()
        mig = CrossNodeMigration(ctx_a, ctx_b, ctx_a, root, f"{unique[:5]}{attempt}", interval=0.05)
        try:
            mig.boot()
            src, dst, peer = mig.pods["src"], mig.pods["dst"], mig.pods["peer"]
            src_port, src_sock, src_mac = src.port, src.socket, src.mac
            # each pod's device and port come from its own node; IPs from each node's own range
            assert _port_on(ctx_a, src_port) and not _port_on(ctx_b, src_port)
            assert _port_on(ctx_b, dst.port) and not _port_on(ctx_a, dst.port)
            assert str(ctx_a.run_dir) in str(src.socket) and str(ctx_b.run_dir) in str(dst.socket)
            assert src.ip != dst.ip and src.ip != peer.ip
            assert mig.vms["src"].stable_socket == mig.vms["dst"].stable_socket  # one path in both pods
            try:
                run = mig.run(f"unix:{root}/mig.sock")
            except MigrationError as exc:
                if SILENT_AFTER_SWITCHOVER.match(str(exc)) and guest_broke_after_switchover(mig.vms["dst"]):
                    silent.append(str(exc))
                    continue
                raise
            assert mig.vms["dst"].status() == "running" and not mig.vms["src"].alive()
            assert mig.watch is not None and mig.watch.count_since(time.monotonic() - 1.5) >= 5  # still answering
            assert run["source_node"] == "node-a" and run["target_node"] == "node-b"
            assert 0 < run["gap_ms"] < 10_000 and run["qemu_downtime_ms"] is not None
            # both pods asked for the VMI's MAC; each node's agent made its switch forget it at the switch-over: node
            # a when the source port's link went down, node b when the target port's came up
            assert src_mac == dst.mac == run["vm_mac"] == mig.vm_mac
            for ctx, port, state in ((ctx_a, src_port, "down"), (ctx_b, dst.port, "up")):
                said = f"port {port} link {state}: bridge {ctx.names.bridge('v')} forgot MAC {mig.vm_mac}"
                assert said in ctx.paths.agent_log.read_text(), f"{ctx.run_dir.name}: no '{said}'"
            dst_pid = mig.vms["dst"].pid  # the target QEMU runs at the migration's nice value, every thread of it
            assert dst_pid is not None and run["target_nice"] == -10
            assert {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{dst_pid}/task")} == {-10}
            # the source pod's DEL ran on node a: its port and attachment record are gone; node b's remain
            assert not _port_on(ctx_a, src_port)
            assert not src_sock.exists()
            assert len(_records(ctx_a) - before[0]) == 1  # the peer pod's only
            assert len(_records(ctx_b) - before[1]) == 1  # the target's
            # `vhostplug audit` per node: each node's OVS holds only its own node's sockets, and no finding
            audit_a, audit_b = _audit(ctx_a), _audit(ctx_b)
            assert str(dst.socket) in audit_b and str(dst.socket) not in audit_a
            assert str(peer.socket) in audit_a and str(src_sock) not in audit_a
            break
        finally:
            done = mig.close()
            assert all("failed" not in line for line in done), done
    else:
        raise AssertionError(f"the guest's NIC stayed silent after the switch-over in both attempts: {silent}")
    if silent:  # counted, not hidden: every judged assertion held for the second attempt
        warnings.warn(ToleratedFlake(f"cross-node migration: 1 of 2 attempts silent: {silent[0]}"), stacklevel=1)
    # nothing of the migration is left on either node
    for ctx, had in zip(ctxs, before, strict=True):
        assert _records(ctx) == had
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert f"{ctx.names.netns('mig-')}" not in netns


def _audit(ctx: DemoContext) -> set[str]:
    """The sockets ``vhostplug audit`` finds on the node's OVS; every one under the node's own folder, no errors."""
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "vhostplug"),
            "audit",
            "--ovsdb",
            ctx.ovs_endpoint,
            "--no-libvirt",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["error"] == 0, report["findings"]
    sockets = {row["socket"] for row in report["rows"]}
    assert all(sock.startswith(f"{ctx.run_dir}/") for sock in sockets), sockets
    return sockets


def _records(ctx: DemoContext) -> set[str]:
    folder = ctx.run_dir / "attachments"  # made by the node's first ADD
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _port_on(ctx: DemoContext, port: str) -> bool:
    return bool(ovsdb_rpc.select(ctx.ovs_endpoint, "Port", columns=["name"], where=[["name", "==", port]]))


@pytest.mark.root
def test_down_leaves_nothing_of_either_node(lab: Path, ctxs: tuple[DemoContext, DemoContext]) -> None:
    a, b = cluster.nodes_of(lab)
    end_a, end_b = cluster.uplink_ends(lab, "p")
    for ctx in ctxs:
        stop_kubelet(ctx)
    done = cluster.cluster_down(lab)
    assert any(line.startswith("node node-a:") for line in done) and any("node-b" in line for line in done)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for node in (a, b):
        assert f"vhp{Names.of(node).tag}-" not in netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert end_a not in links and end_b not in links
    assert not lab.exists()
    assert str(lab) not in Path("/proc/mounts").read_text()


def test_node_count_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(cluster.ClusterError, match="1 to 2 nodes"):
        cluster.node_dirs(tmp_path, 3)
    assert cluster.node_dirs(tmp_path, 1) == [tmp_path]
    assert cluster.nodes_of(tmp_path) == [tmp_path]
