"""Live OpenFlow port counters of a private OVS bridge (``ovs-ofctl dump-ports``; OVSDB statistics are only refreshed
every 5 s)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from vhostplug.lab.migration import MigrationError

_PORT_RE = re.compile(r'port\s+"?([^:"]+)"?:\s*rx pkts=(\d+).*?tx pkts=(\d+)', re.S)


def port_counters(run_dir: Path, bridge: str) -> dict[str, tuple[int, int]]:
    """Live ``{port: (rx_packets, tx_packets)}`` of a private OVS bridge from ``ovs-ofctl dump-ports`` (no 5 s lag)."""
    proc = subprocess.run(
        ["ovs-ofctl", "dump-ports", f"unix:{run_dir / (bridge + '.mgmt')}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    if proc.returncode != 0:
        raise MigrationError(f"ovs-ofctl dump-ports {bridge}: {proc.stderr.strip()}")
    # name the ports: dump-ports prints OpenFlow numbers unless names are known
    names = _port_names(run_dir, bridge)
    out: dict[str, tuple[int, int]] = {}
    for m in _PORT_RE.finditer(proc.stdout):
        key = names.get(m.group(1).strip(), m.group(1).strip())
        out[key] = (int(m.group(2)), int(m.group(3)))
    return out


def _port_names(run_dir: Path, bridge: str) -> dict[str, str]:
    proc = subprocess.run(
        ["ovs-ofctl", "show", f"unix:{run_dir / (bridge + '.mgmt')}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+)\((\S+)\):", proc.stdout, re.M)}
