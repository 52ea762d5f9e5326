"""Rich tables for the audit report and the migration plan (JSON goes straight from ``to_json``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from vhostplug.audit.analyze import AuditReport, Severity
from vhostplug.audit.migrate import MigrationPlan

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_STATUS = {"done": "green", "failed": "bold red", "skipped": "dim", "planned": "", "rolled-back": "yellow"}


def print_audit(report: AuditReport, console: Console) -> None:
    for key, value in report.context.items():
        console.print(f"[bold]{key}[/]: {value}")
    table = Table(title="vhost-user sockets")
    for col in ("socket", "OVS port", "type", "QEMU", "file", "connected"):
        table.add_column(col, overflow="fold")
    for row in report.rows:
        port = row.port
        qemu = ", ".join(f"{c.domain} ({c.mode}{', running' if c.running else ''})" for c in row.consumers) or "-"
        f = row.file
        file_desc = f"{f.mode_string} {f.owner}:{f.group}" if f.exists else "missing"
        connected = "-" if port is None or port.connected is None else ("yes" if port.connected else "no")
        table.add_row(
            row.socket or "-",
            f"{port.bridge}/{port.name}" if port else "-",
            port.ovs_type if port else "-",
            qemu,
            file_desc,
            connected,
        )
    console.print(table)
    findings = Table(title="findings")
    for col in ("severity", "code", "subject", "message"):
        findings.add_column(col, overflow="fold")
    for fd in report.findings:
        findings.add_row(f"[{_STYLE[fd.severity]}]{fd.severity.value}[/]", fd.code, fd.subject, fd.message)
    console.print(findings)
    summary = {s: sum(1 for f in report.findings if f.severity is s) for s in Severity}
    console.print(", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in summary.items()))


def print_plan(mp: MigrationPlan, console: Console, dry_run: bool) -> None:
    console.print(
        f"[bold]migrate to server mode[/] socket dir {mp.socket_dir} group {mp.group}"
        + (" (dry run)" if dry_run else "")
    )
    for note in mp.notes:
        console.print(f"[yellow]note[/]: {note}")
    table = Table()
    for col in ("domain", "step", "detail", "status"):
        table.add_column(col, overflow="fold")
    p = mp.prepare
    table.add_row("*", p.action, p.detail + (f" — {p.error}" if p.error else ""), _status(p.status))
    for d in mp.domains:
        if d.refused:
            table.add_row(d.domain, "refused", d.refused, _status("failed" if not dry_run else "skipped"))
        for s in d.steps:
            table.add_row(d.domain, s.action, s.detail + (f" — {s.error}" if s.error else ""), _status(s.status))
        for note in d.notes:
            table.add_row(d.domain, "note", note, "")
    console.print(table)
    if not mp.domains:
        console.print("no domain has a client-mode vhost-user interface on a dpdkvhostuser port: nothing to do")


def _status(status: str) -> str:
    style = _STATUS.get(status, "")
    return f"[{style}]{status}[/]" if style else status
