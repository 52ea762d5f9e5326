"""`vhostplug lab demo`: the whole stack end to end on one machine (work in progress: see the lab issue)."""

from __future__ import annotations

from pathlib import Path


def run_demo(run_dir: Path, json_out: Path | None = None, keep: bool = False) -> int:
    print(
        "vhostplug lab demo: the full demo (pods running DPDK testpmd and KubeVirt-style VMs through OVS-DPDK) is not\n"
        "wired yet. What it will do: start a private OVS-DPDK, the node agent and a lab kubelet; create two pods that\n"
        "get a vhostplug.io/vhostuser device and a port through the CNI shim and run testpmd; create two VMs through\n"
        "the KubeVirt sidecar's domain rewrite; pass traffic and report. Today: `vhostplug lab up` starts the private\n"
        "OVS-DPDK and the agent, `vhostplug lab status --json` shows them, `vhostplug lab down` removes everything."
    )
    return 0


def cleanup(run_dir: Path) -> list[str]:
    return []
