"""What the demo's phases share: the run folder and its paths, unique names, the progress display, the on-disk
state, the lab kubelet, the pods and CNI calls made so far, and the report being filled. Also the two steps every
phase that attaches something takes (kubelet Allocate, runtime CNI ADD) and the reading of OVS port counters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_state import Names, State
from vhostplug.lab.multus import IFNAME, NAMESPACE, RESOURCE, CniCall, exec_cni, pod_device
from vhostplug.lab.paths import LabPaths
from vhostplug.lab.pods import LabPod
from vhostplug.lab.report import Progress


@dataclass
class DemoContext:
    run_dir: Path
    progress: Progress
    paths: LabPaths = field(init=False)
    names: Names = field(init=False)
    state: State = field(init=False)
    kubelet: Any = None
    #: the lab kubelet's DRA side (registered with the agent's DRA driver by the DRA phase)
    dra_kubelet: Any = None
    ovs_endpoint: str = ""
    pods: dict[str, LabPod] = field(default_factory=dict)
    calls: dict[str, CniCall] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.paths = LabPaths(self.run_dir)
        self.names = Names.of(self.run_dir)
        self.state = State(self.run_dir)
        self.report = {"run_dir": str(self.run_dir), "pods": [], "vms": [], "ovs_ports": []}

    def allocate(self, ph: Any, pod: str) -> tuple[str, Any]:
        """kubelet's Allocate of one device for the pod, then Multus's look-up of it in PodResources: (device id as
        Multus passes it, AllocateResponse)."""
        from vhostplug.lab.podresources.server import PodRef

        ph.doing(f"kubelet Allocate 1 x {RESOURCE} for pod {pod}")
        ids, resp = self.kubelet.allocate(RESOURCE, 1, pod=PodRef(NAMESPACE, pod))
        ph.doing(f"Multus: the device of pod {pod} from PodResources List ({self.paths.pod_resources_socket})")
        device = pod_device(self.paths, pod)
        if device != ids[0]:
            raise RuntimeError(f"PodResources reports {device} for pod {pod}, kubelet allocated {ids[0]}")
        return device, resp

    def attach(self, ph: Any, call: CniCall) -> None:
        """The runtime's CNI ADD, recorded before it runs (cleanup DELs it even when ADD fails half-way)."""
        ph.doing(f"exec {self.paths.cni_bin} (CNI_COMMAND=ADD CNI_NETNS={call.netns_path} CNI_IFNAME={IFNAME})")
        self.state.add("attachments", call.to_json())
        call.result = exec_cni(self.paths.cni_bin, self.paths.cni_bin_dir, call, "ADD")
        self.calls[call.name] = call

    def of_kind(self, kind: str) -> list[CniCall]:
        return [c for c in self.calls.values() if c.kind == kind]

    def wait_ovs_counters(self, calls: list[CniCall], timeout: float = 12.0) -> list[dict[str, Any]]:
        """OVS publishes Interface statistics every 5 s: wait until every port shows traffic both ways."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.ovs_ports(calls)
            if all(r["rx_packets"] > 0 and r["tx_packets"] > 0 for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise RuntimeError(f"OVS counters show no traffic both ways: {rows}")
            time.sleep(0.5)

    def ovs_ports(self, calls: list[CniCall]) -> list[dict[str, Any]]:
        """One report row per CNI call: its OVS interface's type, link, socket and counters."""
        from vhostplug import ovsvhost
        from vhostplug.dataplane import ovsdb_rpc
        from vhostplug.model import port_name_for

        out = []
        for call in calls:
            port = port_name_for(call.container_id, IFNAME)
            rows = ovsdb_rpc.select(
                self.ovs_endpoint,
                "Interface",
                where=[["name", "==", port]],
                columns=["name", "type", "link_state", "statistics", "options"],
            )
            row = rows[0] if rows else {}
            stats = {k: int(v) for k, v in ovsdb_rpc.ovs_map(row.get("statistics")).items()}
            link = row.get("link_state")
            out.append(
                {
                    "name": port,
                    "owner": f"{call.kind} {call.name}",
                    "type": row.get("type", "(missing)"),
                    "link_state": link if isinstance(link, str) else "-",
                    "vhost_server_path": ovsdb_rpc.ovs_map(row.get("options")).get(ovsvhost.OPTION_SERVER_PATH, ""),
                    "rx_packets": stats.get("rx_packets", 0),
                    "tx_packets": stats.get("tx_packets", 0),
                    "rx_dropped": stats.get("rx_dropped", 0),
                    "tx_dropped": stats.get("tx_dropped", 0),
                }
            )
        return out
