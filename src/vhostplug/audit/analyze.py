"""Join OVS ports and libvirt consumers by socket path and judge them: pure, so every rule is unit-tested.

Rules (code: severity):
- ``mode-mismatch`` (error): QEMU's role must be the opposite of OVS's (QEMU server <-> ``dpdkvhostuserclient``).
- ``deprecated-port`` (warning): a ``dpdkvhostuser`` port (OVS is the server; lost on every OVS restart).
- ``socket-missing`` (error; info while the server-side VM is stopped): no socket file where one must be.
- ``not-a-socket`` (error): something else sits at the socket path.
- ``path-too-long`` (error): over 107 bytes, the ``sun_path`` limit.
- ``no-access`` (error): the connecting side (QEMU client / non-root OVS) may not write the socket.
- ``group-not-shared`` (warning): the socket's group is not held by both QEMU and OVS (TripleO layout: hugetlbfs).
- ``no-consumer`` (warning; info for vhostplug's pod ports): a port no domain uses.
- ``no-port`` (error when the domain runs, else warning): a domain interface with no OVS port behind it.
- ``shared-socket`` (error): several domains interfaces on one socket.
- ``not-connected`` (warning): a running consumer whose port OVS reports disconnected.
- ``ovs-error`` (error): OVS's ``error`` column on the interface.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vhostplug.audit.access import FileInfo, Principal, can_connect, file_info
from vhostplug.audit.domains import VhostConsumer
from vhostplug.audit.ovs import OvsVhostPort
from vhostplug.model import MAX_SOCKET_PATH
from vhostplug.ovsvhost import ID_ATTACHMENT


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    subject: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity.value, "code": self.code, "subject": self.subject, "message": self.message}


@dataclass(frozen=True)
class Row:
    """One socket path with what sits on each side of it."""

    socket: str
    port: OvsVhostPort | None
    consumers: tuple[VhostConsumer, ...]
    file: FileInfo

    def to_json(self) -> dict[str, Any]:
        return {
            "socket": self.socket,
            "port": self.port.to_json() if self.port else None,
            "consumers": [c.to_json() for c in self.consumers],
            "file": self.file.to_json(),
        }


@dataclass
class AuditReport:
    rows: list[Row] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    def to_json(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "rows": [r.to_json() for r in self.rows],
            "findings": [f.to_json() for f in self.findings],
            "summary": {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity},
        }


def _principal_desc(p: Principal) -> str:
    return f"{p.name} (uid {p.uid}, groups {', '.join(p.group_names())})"


def _check_row(row: Row, qemu: Principal | None, ovs: Principal | None, out: list[Finding]) -> None:
    def add(sev: Severity, code: str, msg: str) -> None:
        out.append(Finding(sev, code, row.socket or (row.port.name if row.port else "?"), msg))

    port, consumers, info = row.port, row.consumers, row.file
    if row.socket and len(row.socket.encode()) > MAX_SOCKET_PATH:
        add(Severity.ERROR, "path-too-long", f"{len(row.socket.encode())} bytes; unix sockets allow {MAX_SOCKET_PATH}")
    if port is not None:
        if port.error:
            add(Severity.ERROR, "ovs-error", f"OVS reports on {port.name}: {port.error}")
        if port.deprecated:
            add(
                Severity.WARNING,
                "deprecated-port",
                f"{port.name} is dpdkvhostuser (OVS is the server, deprecated): migrate it to dpdkvhostuserclient "
                "with `vhostplug migrate-mode --to server`",
            )
        if not row.socket:
            add(Severity.ERROR, "socket-missing", f"{port.name} is dpdkvhostuserclient without vhost-server-path")
    if len(consumers) > 1:
        names = ", ".join(f"{c.domain}/{c.alias or c.mac}" for c in consumers)
        add(Severity.ERROR, "shared-socket", f"one socket, several consumers: {names}")
    for c in consumers:
        if port is not None and c.mode != port.qemu_mode.value:
            add(
                Severity.ERROR,
                "mode-mismatch",
                f"domain {c.domain} has mode='{c.mode}' but OVS port {port.name} is {port.ovs_type}, which needs "
                f"QEMU mode='{port.qemu_mode.value}'",
            )
        if port is None:
            sev = Severity.ERROR if c.running else Severity.WARNING
            add(sev, "no-port", f"domain {c.domain} interface {c.alias or c.mac} has no OVS port on this socket")
    if port is not None and not consumers:
        ours = port.external_ids.get(ID_ATTACHMENT)
        if ours:
            add(Severity.INFO, "no-consumer", f"{port.name} serves pod attachment {ours} (no libvirt domain)")
        else:
            add(Severity.WARNING, "no-consumer", f"no libvirt domain uses {port.name}")

    # who creates the socket, and must it exist now?
    server_side_is_ovs = port.deprecated if port is not None else any(c.mode == "client" for c in consumers)
    server_running = True if server_side_is_ovs else any(c.running for c in consumers)
    if row.socket and not info.exists:
        if server_running and (port is not None or consumers):
            creator = "OVS" if server_side_is_ovs else "QEMU"
            add(Severity.ERROR, "socket-missing", f"no socket file; {creator} should have created it")
        elif consumers:
            add(Severity.INFO, "socket-missing", "no socket yet: QEMU creates it when the domain starts")
    elif info.exists and not info.is_socket:
        add(Severity.ERROR, "not-a-socket", f"{info.mode_string} {info.owner}:{info.group} is not a unix socket")
    elif info.exists:
        clients: list[tuple[str, Principal | None]] = []
        if server_side_is_ovs:
            clients = [("QEMU", qemu)] if consumers else []
        elif port is not None:
            clients = [("OVS", ovs)]
        for who, principal in clients:
            if principal is not None and not can_connect(principal, info):
                add(
                    Severity.ERROR,
                    "no-access",
                    f"{who} {_principal_desc(principal)} cannot connect: socket is "
                    f"{info.mode_string} {info.owner}:{info.group}",
                )
        if consumers and port is not None:
            # a non-root side that does not own the socket relies on its group (or on world-writable bits)
            lacking = [
                p
                for p in (qemu, ovs)
                if p is not None and not p.is_root and p.uid != info.uid and info.gid not in p.gids
            ]
            if lacking:
                names = "; ".join(f"{p.name} holds {', '.join(p.group_names())}" for p in lacking)
                add(
                    Severity.WARNING,
                    "group-not-shared",
                    f"socket group {info.group} is not shared by QEMU and OVS ({names}); use one group held by "
                    "both, e.g. hugetlbfs",
                )
    if port is not None and port.connected is False and any(c.running for c in consumers):
        add(Severity.WARNING, "not-connected", f"{port.name} is not connected although its domain runs")


def analyze(
    ports: list[OvsVhostPort],
    consumers: list[VhostConsumer],
    qemu: Principal | None = None,
    ovs: Principal | None = None,
    stat_fn: Callable[[str], FileInfo] = file_info,
) -> AuditReport:
    """Join by socket path and apply every rule; rows come in socket order, findings errors first."""
    by_path: dict[str, tuple[list[OvsVhostPort], list[VhostConsumer]]] = {}
    report = AuditReport()
    for p in ports:
        by_path.setdefault(p.socket_path or f"<{p.name}>", ([], []))[0].append(p)
    for c in consumers:
        by_path.setdefault(c.path, ([], []))[1].append(c)
    findings: list[Finding] = []
    for path in sorted(by_path):
        path_ports, path_consumers = by_path[path]
        socket = "" if path.startswith("<") else path
        info = stat_fn(socket) if socket else FileInfo(path="", exists=False)
        if len(path_ports) > 1:
            names = ", ".join(p.name for p in path_ports)
            findings.append(Finding(Severity.ERROR, "shared-socket", path, f"several OVS ports on one socket: {names}"))
        sides: list[OvsVhostPort | None] = list(path_ports) or [None]
        for port in sides:
            row = Row(socket, port, tuple(path_consumers), info)
            report.rows.append(row)
            _check_row(row, qemu, ovs, findings)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    report.findings = sorted(findings, key=lambda f: (order[f.severity], f.subject, f.code))
    return report
