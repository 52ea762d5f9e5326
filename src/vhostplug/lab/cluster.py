"""The lab as a small cluster: `vhostplug lab up/status/down --nodes N` (N = 1 or 2).

One node is the lab as it always was, in the run folder itself. Two nodes are two whole single-node labs, each in a
folder of its own (``<run dir>/node-a``, ``node-b``) and so with its own private OVS-DPDK (own OVSDB, run folder,
DPDK file prefix, memory and network namespace), agent and node policy, CNI shim, socket root, kubelet folders and
bridges (every name derives from the node's folder) — nothing shared but the machine, as on a cluster. The nodes'
bridges are joined the way nodes on a provider network are: one uplink per lab network (pods ``p``, VMs ``v``), a
veth pair standing for the wire between two NICs, whose ends live in the two nodes' host network namespaces (where
each node's ovs-vswitchd runs). Each end is a ``dpdk`` port on its node's bridge, opened by DPDK's af_packet PMD
(``net_af_packet``), so OVS's PMD thread polls the uplink as it would a NIC (a ``system`` port would be served by
ovs-vswitchd's main thread instead: ~20 kpps here). Both nodes' PMDs poll core 1 (this machine has two cores): the
report says so.

``down`` works from the folders alone: each node's own teardown removes its namespace, which takes its veth end and
so the whole pair.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from vhostplug.lab import ovsdb, stack
from vhostplug.lab.demo_state import Names
from vhostplug.lab.ovs import OvsConfig, PrivateOvs
from vhostplug.lab.paths import LabPaths

NODE_NAMES = ("a", "b")
#: the lab networks that span nodes: pods (testpmd) and VMs
UPLINK_KINDS = ("p", "v")
MAX_NODES = len(NODE_NAMES)


class ClusterError(RuntimeError):
    pass


def node_dirs(run_dir: Path, nodes: int) -> list[Path]:
    """The run folder of each node: the lab's own folder for one node, ``node-a``/``node-b`` below it for two."""
    if not 1 <= nodes <= MAX_NODES:
        raise ClusterError(f"the lab runs 1 to {MAX_NODES} nodes on this machine, not {nodes}")
    return [Path(run_dir)] if nodes == 1 else [Path(run_dir) / f"node-{n}" for n in NODE_NAMES[:nodes]]


def nodes_of(run_dir: Path) -> list[Path]:
    """The node folders a lab in ``run_dir`` has (a folder without node folders is a one-node lab)."""
    found = [Path(run_dir) / f"node-{n}" for n in NODE_NAMES if (Path(run_dir) / f"node-{n}").is_dir()]
    return found or [Path(run_dir)]


def uplink_ends(run_dir: Path, kind: str) -> tuple[str, str]:
    """The veth names of one network's uplink (≤ 15 bytes, unique per lab folder)."""
    tag = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:6]
    return f"vl{kind}{tag}a", f"vl{kind}{tag}b"


def af_packet_devargs(netdev: str) -> str:
    """DPDK's af_packet PMD on ``netdev`` (a vdev name unique per port: the PMD's name plus the netdev's)."""
    return f"net_af_packet_{netdev},iface={netdev},framecnt=16384,qdisc_bypass=1"


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")


def _add_uplink_port(ovs: PrivateOvs, bridge: str, port: str, datapath_type: str) -> None:
    """``port`` (a netdev in the node's namespace) as a DPDK af_packet port on ``bridge`` (made when missing),
    applied by ovs-vswitchd."""
    got = ovsdb.add_dpdk_port(ovs.endpoint, bridge, port, af_packet_devargs(port), datapath_type)
    if not isinstance(got.get("ofport"), int) or got["ofport"] < 1:
        raise ClusterError(f"ovs-vswitchd did not add uplink {port} to {bridge}: {[got] if got else []}")


def join(run_dir: Path, a: Path, b: Path) -> list[dict[str, Any]]:
    """Join node ``a``'s and node ``b``'s bridges, one uplink per lab network; returns what each uplink is."""
    ovs_a, ovs_b = PrivateOvs(LabPaths(a).ovs_dir), PrivateOvs(LabPaths(b).ovs_dir)
    names_a, names_b = Names.of(a), Names.of(b)
    uplinks = []
    for kind in UPLINK_KINDS:
        end_a, end_b = uplink_ends(run_dir, kind)
        _ip("link", "add", end_a, "type", "veth", "peer", "name", end_b)
        for end, ovs in ((end_a, ovs_a), (end_b, ovs_b)):
            _ip("link", "set", end, "netns", ovs.netns)
            _ip("-n", ovs.netns, "link", "set", end, "up")
        _add_uplink_port(ovs_a, names_a.bridge(kind), end_a, "netdev")
        _add_uplink_port(ovs_b, names_b.bridge(kind), end_b, "netdev")
        uplinks.append(
            {
                "network": kind,
                "kind": "veth, DPDK af_packet ports (L2 provider-network uplink)",
                "ends": [
                    {"node": a.name, "bridge": names_a.bridge(kind), "port": end_a, "netns": ovs_a.netns},
                    {"node": b.name, "bridge": names_b.bridge(kind), "port": end_b, "netns": ovs_b.netns},
                ],
            }
        )
    return uplinks


def cluster_up(run_dir: Path, nodes: int = 1, hugepages: bool | None = None) -> dict[str, Any]:
    """Start every node (harmless when up) and, for two, the uplinks; returns :func:`cluster_status`. ``hugepages``:
    as :func:`vhostplug.lab.stack.lab_up` (None: each node on hugepages when the pool has room)."""
    dirs = node_dirs(run_dir, nodes)
    if nodes == 1:
        return stack.lab_up(dirs[0], hugepages=hugepages)
    try:
        for d in dirs:
            stack.lab_up(d, hugepages=hugepages)
        a, b = dirs
        if not _uplinks_present(run_dir, a):
            join(run_dir, a, b)
    except Exception:
        cluster_down(run_dir)
        raise
    return cluster_status(run_dir)


def _uplinks_present(run_dir: Path, a: Path) -> bool:
    ns = PrivateOvs(LabPaths(a).ovs_dir).netns
    end_a, _ = uplink_ends(run_dir, UPLINK_KINDS[0])
    return subprocess.run(["ip", "-n", ns, "link", "show", end_a], capture_output=True, check=False).returncode == 0


def cluster_status(run_dir: Path) -> dict[str, Any]:
    """One node: the lab's status as always. Two: ``nodes`` (each node's status, with its name) and ``uplinks``."""
    dirs = nodes_of(run_dir)
    if len(dirs) == 1:
        return stack.lab_status(dirs[0])
    nodes = [{"node": d.name, **stack.lab_status(d)} for d in dirs]
    uplinks = []
    for kind in UPLINK_KINDS:
        ends = []
        for d, end in zip(dirs, uplink_ends(run_dir, kind), strict=True):
            ns = PrivateOvs(LabPaths(d).ovs_dir).netns
            up = subprocess.run(["ip", "-n", ns, "link", "show", end], capture_output=True, check=False)
            ends.append(
                {"node": d.name, "bridge": Names.of(d).bridge(kind), "port": end, "present": up.returncode == 0}
            )
        uplinks.append({"network": kind, "ends": ends})
    pmd = OvsConfig().pmd_cpu_mask
    return {
        "run_dir": str(run_dir),
        "nodes": nodes,
        "uplinks": uplinks,
        "cpu_layout": f"every node's OVS PMD polls the cores of mask {pmd} (core 1): {len(dirs)} PMDs share it",
    }


def cluster_down(run_dir: Path) -> list[str]:
    """Stop and remove every node (also after a crash); a node's namespace takes its uplink ends with it."""
    done: list[str] = []
    dirs = nodes_of(run_dir)
    for d in reversed(dirs):
        done += [f"node {d.name}: {line}" if len(dirs) > 1 else line for line in stack.lab_down(d)]
    if len(dirs) > 1 and Path(run_dir).is_dir():
        try:
            Path(run_dir).rmdir()
            done.append(f"removed {run_dir}")
        except OSError as exc:
            done.append(f"kept {run_dir}: {exc.strerror}")
    return done
