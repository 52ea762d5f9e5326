"""`vhostplug lab demo`: the whole stack end to end on one machine, non-interactive, then a report.

The lab plays the parts a cluster would, one module per role and phase, run in order by :func:`run_demo` on a shared
:class:`~vhostplug.lab.demo_context.DemoContext`:

- ``demo_node``: the node (private OVS-DPDK, node agent with CNI server and device plugin, installed CNI shim) and the
  lab kubelet that sees the device plugin register;
- ``demo_pods``: kubelet, runtime and Multus making two pods (``multus``: netconf, device-info copy, CNI exec);
- ``demo_traffic``: DPDK testpmd in the pods, ``txonly`` → ``rxonly`` through OVS, rate in Mpps and the core layout;
- ``demo_vdpa``: stand-in vDPA VFs (veth pairs), two pods given their virtio-vdpa netdevs through the CNI, pinging
  each other through their representors on the OVS-DPDK bridge;
- ``demo_vms``: virt-launcher pods, the KubeVirt hook sidecar, libvirt and QEMU, VMs pinging each other;
- ``demo_cleanup``: undoes all of it from ``<run_dir>/demo/state.json`` (written by ``demo_state`` before anything
  is made), also after a crash; ``vhostplug lab down`` calls it.

Failure injection (tests, documented in docs/lab.md): ``VHOSTPLUG_DEMO_TESTPMD=<binary>`` runs that binary instead
of ``dpdk-testpmd`` inside the pods; a bogus path makes the testpmd step fail and the demo tear down.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_cleanup import cleanup
from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.demo_dra import run_dra, unprepare
from vhostplug.lab.demo_dra_vm import run_dra_vm
from vhostplug.lab.demo_node import lab_up, start_kubelet, stop_kubelet
from vhostplug.lab.demo_pods import create_pods
from vhostplug.lab.demo_state import Names
from vhostplug.lab.demo_traffic import ENV_TESTPMD, run_testpmd
from vhostplug.lab.demo_vdpa import run_vdpa
from vhostplug.lab.demo_vms import run_vms
from vhostplug.lab.multus import IFNAME, NETWORK_STATUS, CniCall, annotations_file, host_socket
from vhostplug.lab.report import DemoError, Progress

__all__ = ["ENV_TESTPMD", "NETWORK_STATUS", "Names", "annotations_file", "cleanup", "run_demo"]

#: the demo's phases in order; the last ones (the VMs: device plugin, then DRA) are left out with ``vms=False``
PHASES: tuple[Callable[[DemoContext], None], ...] = (
    lab_up,
    start_kubelet,
    create_pods,
    run_testpmd,
    run_vdpa,
    run_dra,
    run_vms,
    run_dra_vm,
)
VM_PHASES = 2


def teardown(ctx: DemoContext, others: tuple[DemoContext, ...] = ()) -> list[str]:
    from vhostplug.lab.cluster import cluster_down

    done: list[str] = []
    for c in (ctx, *others):
        done += unprepare(c)
        stop_kubelet(c)
    return done + cluster_down(ctx.run_dir.parent if others else ctx.run_dir)


def two_node_phases(a: DemoContext, b: DemoContext) -> list[Callable[[], None]]:
    """The two-node demo: both nodes up and joined, the same-node pair on node a, then one pod per node across."""
    from vhostplug.lab.cluster import join
    from vhostplug.lab.demo_cross import run_cross_node

    def up_and_join() -> None:
        lab_up(b)
        with a.progress.phase("join the nodes: an uplink per network (veth between their host namespaces)") as ph:
            ph.doing(f"ip link add ... type veth; move the ends into {a.run_dir.name}'s and {b.run_dir.name}'s netns")
            a.report["uplinks"] = join(a.run_dir.parent, a.run_dir, b.run_dir)
            ph.note = ", ".join(f"{u['ends'][0]['bridge']}↔{u['ends'][1]['bridge']}" for u in a.report["uplinks"])

    def cross() -> None:
        from vhostplug.lab.demo_crossvm import migration, vm_ping

        a.report["cross_node"] = {**run_cross_node(a, b), "vm_ping": None, "migration": None}
        a.report["cross_node"]["vm_ping"] = vm_ping(a, b)
        a.report["cross_node"]["migration"] = migration(a, b)

    return [
        lambda: lab_up(a),
        up_and_join,
        lambda: start_kubelet(a),
        lambda: start_kubelet(b),
        lambda: create_pods(a),
        lambda: run_testpmd(a),
        cross,
    ]


# ---- entry point -------------------------------------------------------------------------------------------------
def run_demo(run_dir: Path, json_out: Path | None = None, keep: bool = False, vms: bool = True, nodes: int = 1) -> int:
    """Run the demo; 0 when every step passed. ``vms=False`` stops after the pods (quicker, for tests); ``nodes=2``
    runs two lab nodes joined by an uplink (docs/lab.md)."""
    from rich.console import Console

    from vhostplug.lab.cluster import node_dirs
    from vhostplug.lab.report import render, write_json

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 150))
    progress = Progress(console)
    run_dir = Path(run_dir)
    dirs = node_dirs(run_dir, nodes)
    for d in dirs:
        if (d / "demo" / "state.json").exists():
            for line in cleanup(d):
                console.print(f"[dim]earlier demo: {line}[/]")
    ctx, *others = (DemoContext(d, progress) for d in dirs)
    steps: list[Callable[[], None]]
    if others:
        steps = two_node_phases(ctx, others[0])
    else:
        steps = [functools.partial(phase, ctx) for phase in (PHASES if vms else PHASES[:-VM_PHASES])]
    t0 = time.monotonic()
    error: DemoError | None = None
    try:
        for step in steps:
            step()
    except DemoError as exc:
        error = exc
    except KeyboardInterrupt:
        error = DemoError("interrupted", "-", "KeyboardInterrupt")
    report = ctx.report
    with contextlib.suppress(Exception):
        report["attachments"] = [_attachment_row(c) for c in ctx.calls.values()]
        if error is not None and ctx.ovs_endpoint:
            report["ovs_ports"] = ctx.ovs_ports(list(ctx.calls.values()))
    report.setdefault("attachments", [])
    if error is None and not keep:
        with progress.phase("teardown"):
            report["teardown"] = teardown(ctx, tuple(others))
    elif error is not None:
        console.print(f"[red bold]demo failed[/] at step [bold]{error.step}[/]\n  command: {error.command}")
        console.print("  " + "\n  ".join(error.detail.splitlines()[-25:]), markup=False, highlight=False)
        for path, tail in error.logs.items():
            console.print(f"[dim]--- {path} (tail) ---[/]\n{tail}")
        if keep:
            console.print(f"--keep: left as it is; `vhostplug lab down --run-dir {run_dir}` removes it")
        else:
            t_down = time.monotonic()
            try:
                report["teardown"] = teardown(ctx, tuple(others))
            except Exception as exc:  # the failure report must still come out
                report["teardown"] = [f"teardown failed: {exc}"]
            progress.phases.append(_phase("teardown", time.monotonic() - t_down))
            console.print("torn down: " + "; ".join(report["teardown"]))
    report["ok"] = error is None
    report["error"] = error.to_json() if error else None
    report["phases"] = progress.to_json()
    report["total_seconds"] = round(time.monotonic() - t0, 1)
    report["kept"] = keep
    if error is None:
        render(report, console)
        if keep:
            console.print(
                f"--keep: the lab is running ({run_dir}): `vhostplug lab status --run-dir {run_dir}`, then "
                f"`vhostplug lab down --run-dir {run_dir}`. Pods: `ip netns list | grep vhp{ctx.names.tag}`; "
                f"VMs: `virsh list`."
            )
    if json_out is not None:
        write_json(report, Path(json_out))
    return 0 if error is None else 1


def _phase(name: str, seconds: float) -> Any:
    from vhostplug.lab.report import Phase

    return Phase(name, seconds=seconds)


def _attachment_row(att: CniCall) -> dict[str, Any]:
    from vhostplug.model import port_name_for

    iface: dict[str, Any] = next((i for i in att.result.get("interfaces", []) if i.get("sandbox")), {})
    devinfo = Path(att.netconf["runtimeConfig"]["CNIDeviceInfoFile"])
    try:
        container_socket = json.loads(devinfo.read_text())["vhost-user"]["path"]
    except (OSError, ValueError, KeyError):
        container_socket = ""
    return {
        "kind": att.kind,
        "name": att.name,
        "device": att.device,
        "container_id": att.container_id,
        "ovs_port": port_name_for(att.container_id, IFNAME),
        "bridge": att.netconf["bridge"],
        "host_socket": iface.get("socketPath") or str(host_socket(att)),
        "container_socket": container_socket,
        "mac": iface.get("mac", ""),
        "ips": [ip["address"] for ip in att.result.get("ips", [])],
        "netns": att.netns_path,
    }
