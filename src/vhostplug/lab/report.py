"""The demo's live progress (rich) and its final report (rich tables, or the same data as JSON).

Progress is a sequence of named phases; each one is timed, shows a spinner while it runs, and records the action it
is doing and the logs that explain it, so a failure can name the step, the command and the log tail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class DemoError(RuntimeError):
    """A demo step failed: which step, which command, why, and the tails of the logs that explain it."""

    def __init__(self, step: str, command: str, detail: str, logs: dict[str, str] | None = None) -> None:
        self.step, self.command, self.detail, self.logs = step, command, detail, logs or {}
        super().__init__(f"step {step!r} failed: {command}: {detail}")

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "command": self.command, "detail": self.detail, "logs": self.logs}


@dataclass
class Phase:
    name: str
    action: str = ""
    logs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""

    def doing(self, action: str) -> None:
        """Name what the phase does now (shown on failure as the command)."""
        self.action = action


@dataclass
class Progress:
    console: Console = field(default_factory=Console)
    phases: list[Phase] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str, logs: list[Path] | None = None) -> Iterator[Phase]:
        ph = Phase(name, logs=list(logs or []))
        self.phases.append(ph)
        t0 = time.monotonic()
        try:
            with self.console.status(f"[bold]{name}[/]…"):
                yield ph
        except DemoError:
            ph.seconds = time.monotonic() - t0
            self.console.print(f"[red]✘[/] {name}  [dim]{ph.seconds:.1f} s[/]")
            raise
        except BaseException as exc:
            ph.seconds = time.monotonic() - t0
            self.console.print(f"[red]✘[/] {name}  [dim]{ph.seconds:.1f} s[/]")
            tails = {str(p): log_tail(p) for p in ph.logs}
            raise DemoError(name, ph.action or name, f"{type(exc).__name__}: {exc}", tails) from exc
        ph.seconds = time.monotonic() - t0
        note = f"  {ph.note}" if ph.note else ""
        self.console.print(f"[green]✔[/] {name}  [dim]{ph.seconds:.1f} s[/]{note}")

    def to_json(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "seconds": round(p.seconds, 2)} for p in self.phases]


def _fmt(n: float | int | None) -> str:
    if n is None:
        return "-"
    if isinstance(n, float):
        return f"{n:,.1f}"
    return f"{n:,}"


def render(report: dict[str, Any], console: Console) -> None:
    """Print the report as tables."""
    att = Table(title="Attachments (device plugin → CNI → OVS)", title_justify="left")
    for col in ("who", "device", "OVS port", "bridge", "socket (container view)", "mac", "ip"):
        att.add_column(col)
    for a in report.get("attachments", []):
        att.add_row(
            a["name"],
            a["device"],
            a["ovs_port"],
            a["bridge"],
            a["container_socket"],
            a["mac"],
            ", ".join(a.get("ips", [])),
        )
    console.print(att)

    ports = Table(title="OVS ports", title_justify="left")
    for col in ("port", "type", "link", "rx packets", "tx packets", "rx dropped", "tx dropped"):
        ports.add_column(col, justify="right" if col.endswith(("packets", "dropped")) else "left")
    for p in report.get("ovs_ports", []):
        ports.add_row(
            p["name"],
            p["type"],
            p["link_state"],
            _fmt(p["rx_packets"]),
            _fmt(p["tx_packets"]),
            _fmt(p["rx_dropped"]),
            _fmt(p["tx_dropped"]),
        )
    console.print(ports)
    if cross := report.get("cross_node"):
        console.print(
            f"across nodes: {cross['mpps_a_to_b']:.2f} Mpps a→b, {cross['mpps_b_to_a']:.2f} Mpps b→a "
            f"({cross['cpu_layout']['text']}); {cross['method']}"
        )

    pods = Table(title="DPDK testpmd in the pods", title_justify="left")
    for col in ("pod", "role", "rx packets", "tx packets", "rx pps (as receiver)", "tx pps (as sender)"):
        pods.add_column(col, justify="left" if col in ("pod", "role") else "right")
    for p in report.get("pods", []):
        pods.add_row(
            p["name"], p["role"], _fmt(p["rx_packets"]), _fmt(p["tx_packets"]), _fmt(p["rx_pps"]), _fmt(p["tx_pps"])
        )
    if report.get("pods"):
        console.print(pods)
    traffic = report.get("traffic")
    if traffic:
        rates = ", ".join(
            f"{f['sender']} → {f['receiver']} {f['rx_mpps']:.2f} Mpps ({f['rx_gbps']:.2f} Gbit/s)"
            for f in traffic["flows"]
        )
        console.print(
            f"rate received: {rates}\n  measured: {traffic['method']}\n  cores: {traffic['cpu_layout']['text']}"
        )

    vdpa = Table(title="vDPA (stand-in VFs): pods pinging through their representors on OVS", title_justify="left")
    for col in ("pod", "device", "netdev", "ip", "representor", "peer", "ping", "rtt min/avg/max ms"):
        vdpa.add_column(col)
    for r in report.get("vdpa", []):
        vdpa.add_row(
            r["pod"],
            r["device"],
            r["netdev"],
            r["ip"],
            r["representor"],
            r["peer"],
            f"{r['ping_received']}/{r['ping_transmitted']}",
            f"{r['rtt_min_ms']}/{r['rtt_avg_ms']}/{r['rtt_max_ms']}",
        )
    if report.get("vdpa"):
        console.print(vdpa)

    dra = Table(title="DRA: ports from ResourceClaims (prepared by the agent, CDI applied)", title_justify="left")
    for col in ("pod", "claim / request", "device", "CDI device", "socket (container view)", "mtu", "Mpps in"):
        dra.add_column(col, justify="right" if col.startswith("Mpps") else "left")
    for r in report.get("dra", []):
        dra.add_row(
            r["pod"],
            f"{r['claim']} / {r['request']}",
            r["device"],
            r["cdi_device"],
            r["container_socket"],
            _fmt(r.get("mtu")),
            f"{r['mpps']:.2f}" if r.get("mpps") is not None else "-",
        )
    if report.get("dra"):
        console.print(dra)

    vms = Table(title="KubeVirt-style VMs (TCG) pinging through OVS", title_justify="left")
    for col in ("vm", "ip", "peer", "ping", "rtt min/avg/max ms", "boot to first reply s"):
        vms.add_column(col)
    for v in report.get("vms", []):
        vms.add_row(
            v["name"],
            v["ip"],
            v["peer"],
            f"{v['ping_received']}/{v['ping_transmitted']}",
            f"{v['rtt_min_ms']}/{v['rtt_avg_ms']}/{v['rtt_max_ms']}",
            _fmt(v.get("first_reply_s")),
        )
    if report.get("vms"):
        console.print(vms)

    phases = Table(title="Time per phase", title_justify="left")
    phases.add_column("phase")
    phases.add_column("seconds", justify="right")
    for p in report.get("phases", []):
        phases.add_row(p["name"], f"{p['seconds']:.1f}")
    phases.add_row("[bold]total[/]", f"[bold]{report.get('total_seconds', 0):.1f}[/]")
    console.print(phases)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
