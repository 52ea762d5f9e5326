"""A node for the containerd suites: a `vhostplug agent` process on a private OVS-DPDK, the shim installed into
containerd's CNI bin folder by `vhostplug install-cni`, and the conflists the tests and the benchmark write.

The agent's config carries the node policy (socket root, OVS endpoint, ownership); the conflists stay minimal:
``type``, ``agentSocket`` (the private agent's socket; a node uses the default one), ``mode`` and host-local IPAM.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import VhostUserPort

VHOSTPLUG = str(Path(sys.executable).with_name("vhostplug"))
BRIDGE = "br-ctrd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_cni(bin_dir: Path) -> Path:
    """Install the shim as a user does: `vhostplug install-cni --dest <containerd's bin_dir>`."""
    out = subprocess.run([VHOSTPLUG, "install-cni", "--dest", str(bin_dir)], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


class AgentNode:
    """The agent side of a node; ``start``/``stop`` the agent process, read its metrics and OVS's ports."""

    def __init__(self, ovs: PrivateOvs, root: Path | None = None) -> None:
        self.ovs = ovs
        self.dir = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="vhp-node-", dir="/tmp"))
        self.socket = self.dir / "agent.sock"
        self.socket_root = self.dir / "s"
        self.config = self.dir / "agent.json"
        self.log = self.dir / "agent.log"
        self.state_dir = self.dir / "state"  # the agent's records of what each ADD made
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dataplane = OvsDataplane(ovs.endpoint, ovs_rundir=ovs.run_dir)

    def agent_config(self) -> dict[str, Any]:
        return {
            "listen": str(self.socket),
            "socketRoot": str(self.socket_root),
            "dataplane": {"backend": "ovs", "ovsdb": self.ovs.endpoint, "ovsRundir": str(self.ovs.run_dir)},
            "metricsPort": self.metrics_port,
            "relocateSeconds": 0.2,
            "stateDir": str(self.state_dir),
            # node policy: the bridge the conflists name
            "bridges": {"allowed": [BRIDGE]},
        }

    def start(self, timeout: float = 30.0) -> None:
        self.config.write_text(json.dumps(self.agent_config()))
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([VHOSTPLUG, "agent", "--config", str(self.config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.socket.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("agent did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    # -- what the agent did ------------------------------------------------------------------------------------
    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def cni_seconds(self) -> dict[str, tuple[int, float]]:
        """Agent-side CNI latency by verb: (count, total seconds)."""
        text = self.metrics_text()
        out: dict[str, tuple[int, float]] = {}
        for m in re.finditer(r'^vhostplug_cni_seconds_count\{verb="(\w+)"\} ([0-9.e+]+)$', text, re.M):
            total = re.search(rf'^vhostplug_cni_seconds_sum\{{verb="{m.group(1)}"\}} ([0-9.e+-]+)$', text, re.M)
            out[m.group(1)] = (int(float(m.group(2))), float(total.group(1)) if total else 0.0)
        return out

    def cni_calls(self) -> dict[str, int]:
        """CNI requests the agent has answered, by ``VERB`` and ``VERB/code``, from its Prometheus endpoint."""
        text = self.metrics_text()
        out: dict[str, int] = {}
        for m in re.finditer(r'^vhostplug_cni_requests_total\{code="(\d+)",verb="(\w+)"\} ([0-9.e+]+)$', text, re.M):
            code, verb, n = m.group(1), m.group(2), int(float(m.group(3)))
            out[verb] = out.get(verb, 0) + n
            out[f"{verb}/{code}"] = n
        return out

    def ports(self) -> list[VhostUserPort]:
        return list(self.dataplane.list_ports())

    def port_of(self, container_id: str, ifname: str = "eth0") -> VhostUserPort | None:
        key = f"{container_id}/{ifname}"
        return next((p for p in self.ports() if p.attachment_key == key), None)

    def leftovers(self) -> list[str]:
        left = [f"OVS port {p.name} ({p.attachment_key})" for p in self.ports()]
        if self.socket_root.exists():
            left += [f"socket folder {p}" for p in self.socket_root.iterdir()]
        if self.state_dir.exists():
            left += [f"agent record {p.name}" for p in self.state_dir.iterdir()]
        return left

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            self.dataplane.close()


def host_local(ipam_dir: Path, subnet: str) -> dict[str, Any]:
    return {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(ipam_dir)}


def vhostplug_conflist(
    node: AgentNode,
    ipam_dir: Path,
    name: str,
    cni_version: str = "1.0.0",
    mode: str = "server",
    subnet: str = "10.99.0.0/24",
    **extra: Any,
) -> dict[str, Any]:
    """A conflist whose only plugin is vhostplug, with host-local IPAM (CRI wants an IP on the pod's interface)."""
    plugin: dict[str, Any] = {
        "type": "vhostplug",
        "agentSocket": str(node.socket),
        "socketRoot": str(node.socket_root),
        "bridge": BRIDGE,
        "mode": mode,
        "ipam": host_local(ipam_dir, subnet),
    }
    plugin.update(extra)
    return {"cniVersion": cni_version, "name": name, "plugins": [plugin]}


def ptp_conflist(ipam_dir: Path, name: str, subnet: str = "10.98.0.0/24") -> dict[str, Any]:
    """Debian's stock point-to-point plugin with host-local: the baseline of the sandbox benchmark."""
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{"type": "ptp", "ipMasq": False, "ipam": host_local(ipam_dir, subnet)}],
    }
