"""Lab live migration on one host: two raw QEMUs (source and target "virt-launcher pods") behind OVS-DPDK.

libvirt refuses to migrate a domain to the same host, so this drives ``qemu-system-x86_64`` directly (TCG, q35,
shared memfd guest memory, ``vectors=0`` on the vhost-user virtio-net: see DESIGN.md) and migrates over QMP.

Each QEMU runs in a mount namespace of its own (``unshare --mount --propagation private``), as it would in its own
virt-launcher pod: inside, a small tmpfs is mounted on the shared links folder and holds the symlink
``<links>/<iface>`` -> that QEMU's own device folder. Both command lines name the same stable socket path
``<links>/<iface>/vhu.sock`` (what the sidecar writes into the domain XML), while each QEMU binds its server socket
in its own device folder, where its own ``dpdkvhostuserclient`` OVS port looks for it. The namespace lives exactly as
long as its QEMU (``unshare`` execs it), so ending the process is the whole cleanup.

Owns: :class:`Qmp` (a minimal QMP client), :class:`LabQemu` (one QEMU in its own mount namespace),
:class:`PingWatch` (host-timestamped guest ping replies read from the serial logs), :func:`migrate` and
:func:`port_counters` (live OpenFlow port counters; OVSDB statistics are only refreshed every 5 s) and
:class:`MigrationLab` (the whole scenario, shared by the functional test and ``bench/migration_downtime.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.lab import ovsdb
from vhostplug.lab.vms import Guest, LabVmError

QEMU = "qemu-system-x86_64"
SOCKET_NAME = "vhu.sock"

# runs inside the new mount namespace: a private tmpfs on the links folder, our own link in it, then QEMU
_NS_SCRIPT = 'mount -t tmpfs -o size=64k,mode=0755 vhp-links "$1" && ln -s "$2" "$1/$3" && shift 3 && exec "$@"'


class MigrationError(LabVmError):
    """A QMP command failed or the migration did not complete; the message says which and why."""


class Qmp:
    """A minimal QMP client on a unix socket: greeting, ``qmp_capabilities``, then synchronous commands."""

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.path = path
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise MigrationError(f"no QMP socket at {path} after {timeout:.0f}s") from None
                time.sleep(0.05)
        sock.settimeout(timeout)
        self._sock = sock
        self._buf = b""
        self._recv()  # greeting
        self.execute("qmp_capabilities")

    def _recv(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise MigrationError(f"QMP {self.path}: connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, **arguments: Any) -> Any:
        req: dict[str, Any] = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            msg = self._recv()
            if "event" in msg:
                continue
            if "error" in msg:
                raise MigrationError(f"QMP {command} on {self.path}: {msg['error'].get('desc', msg['error'])}")
            return msg.get("return")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


@dataclass
class LabQemu:
    """One lab QEMU in its own mount namespace; all of its files live in ``root`` (keep it short: socket paths)."""

    name: str
    root: Path
    links_dir: Path
    mac: str
    cmdline: str
    iface: str = "net1"
    incoming: bool = False
    memory_mb: int = 256
    guest: Guest | None = None
    proc: subprocess.Popen[bytes] | None = None
    qmp: Qmp | None = None

    @property
    def device_dir(self) -> Path:
        return self.root / "dev"

    @property
    def real_socket(self) -> Path:
        return self.device_dir / SOCKET_NAME

    @property
    def stable_socket(self) -> str:
        return f"{self.links_dir}/{self.iface}/{SOCKET_NAME}"

    @property
    def qmp_socket(self) -> Path:
        return self.root / "qmp.sock"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.root / "qemu.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def qemu_argv(self) -> list[str]:
        guest = self.guest or Guest.find()
        argv = [
            QEMU,
            "-name",
            self.name,
            "-machine",
            "q35,accel=tcg",
            "-m",
            str(self.memory_mb),
            "-smp",
            "1",
            "-object",
            f"memory-backend-memfd,id=mem,size={self.memory_mb}M,share=on",
            "-numa",
            "node,memdev=mem",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-kernel",
            str(guest.kernel),
            "-initrd",
            str(guest.initrd),
            "-append",
            f"console=ttyS0 quiet panic=-1 {self.cmdline}".strip(),
            "-serial",
            f"file:{self.console_log}",
            "-chardev",
            f"socket,id=c0,path={self.stable_socket},server=on,wait=off",
            "-netdev",
            "vhost-user,id=n0,chardev=c0",
            "-device",
            f"virtio-net-pci,netdev=n0,mac={self.mac},vectors=0",
            "-qmp",
            f"unix:{self.qmp_socket},server=on,wait=off",
            "-no-reboot",
        ]
        if self.incoming:
            argv += ["-incoming", "defer"]
        return argv

    def argv(self) -> list[str]:
        """``unshare`` into a new mount namespace, make our link there, exec QEMU (same pid throughout)."""
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _NS_SCRIPT,
            "sh",
            str(self.links_dir),
            str(self.device_dir),
            self.iface,
            *self.qemu_argv(),
        ]

    def start(self, timeout: float = 20.0) -> None:
        """Start QEMU and wait for its vhost-user server socket; then attach its OVS port and :meth:`connect_qmp`."""
        self.device_dir.mkdir(parents=True, exist_ok=True)
        self.links_dir.mkdir(parents=True, exist_ok=True)
        with self.qemu_log.open("wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.real_socket.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise MigrationError(f"QEMU {self.name} did not bind {self.real_socket}; log:\n{self.log_tail()}")
            time.sleep(0.05)

    def connect_qmp(self, timeout: float = 30.0) -> None:
        """QEMU answers QMP only once its vhost-user backend has connected (the netdev waits for it at startup)."""
        try:
            self.qmp = Qmp(self.qmp_socket, timeout=timeout)
        except (OSError, MigrationError) as exc:
            raise MigrationError(f"QEMU {self.name}: no QMP ({exc}); log:\n{self.log_tail()}") from exc

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.qemu_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def execute(self, command: str, **arguments: Any) -> Any:
        if self.qmp is None:
            raise MigrationError(f"QEMU {self.name} is not started")
        return self.qmp.execute(command, **arguments)

    def status(self) -> str:
        return str(self.execute("query-status")["status"])

    def stop(self, timeout: float = 10.0) -> None:
        """Quit QEMU (QMP, then SIGKILL); its mount namespace and tmpfs go with it."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            if self.qmp is not None:
                with contextlib.suppress(Exception):
                    self.qmp.execute("quit")
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None


_REPLY_RE = re.compile(rb"bytes from [^:]+: seq=(\d+) ")


@dataclass
class PingWatch:
    """Follows serial logs and stamps each guest ping reply (``seq=N``) with the host's monotonic clock.

    The guest's own clock stops while the VM is paused, so the gap is measured on the host: the console line of a
    reply is written within a few ms of its arrival (polling every ``poll`` seconds).
    """

    logs: list[Path]
    poll: float = 0.005
    replies: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PingWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        offsets = dict.fromkeys(self.logs, 0)
        partial = dict.fromkeys(self.logs, b"")
        while not self._stop.is_set():
            for path in self.logs:
                try:
                    with path.open("rb") as f:
                        f.seek(offsets[path])
                        data = f.read()
                except OSError:
                    continue
                if not data:
                    continue
                now = time.monotonic()
                offsets[path] += len(data)
                *lines, partial[path] = (partial[path] + data).split(b"\n")
                found = [(now, int(m.group(1))) for line in lines if (m := _REPLY_RE.search(line))]
                if found:
                    with self._lock:
                        self.replies.extend(found)
            time.sleep(self.poll)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def snapshot(self) -> list[tuple[float, int]]:
        with self._lock:
            return sorted(self.replies)

    def count_since(self, t: float) -> int:
        return sum(1 for ts, _ in self.snapshot() if ts >= t)

    def wait_replies(self, n: int, since: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count_since(since) < n:
            if time.monotonic() > deadline:
                raise MigrationError(f"only {self.count_since(since)} of {n} ping replies after {timeout:.0f}s")
            time.sleep(0.05)

    def max_gap(self, start: float, end: float) -> tuple[float, int]:
        """The longest silence (seconds) between two replies around ``[start, end]`` and the seqs lost in it."""
        replies = self.snapshot()
        before = [r for r in replies if r[0] <= start]
        inside = [r for r in replies if start < r[0] <= end]
        after = [r for r in replies if r[0] > end]
        window = before[-1:] + inside + after[:1]
        if len(window) < 2:
            raise MigrationError("no ping replies on both sides of the migration")
        gap, lost = 0.0, 0
        for (t0, s0), (t1, s1) in itertools.pairwise(window):
            if t1 - t0 > gap:
                gap, lost = t1 - t0, max(0, s1 - s0 - 1)
        return gap, lost


@dataclass(frozen=True)
class MigrationResult:
    """Timings of one migration: host wall times, QMP's own figures (ms) and the final status."""

    started: float
    completed: float
    status: str
    qmp_downtime_ms: int | None
    qmp_total_ms: int | None
    qmp_setup_ms: int | None


def migrate(
    source: LabQemu,
    target: LabQemu,
    uri: str,
    downtime_limit_ms: int = 100,
    max_bandwidth: int = 4 << 30,
    timeout: float = 120.0,
) -> MigrationResult:
    """Precopy migration over QMP: ``migrate-incoming`` on the target, ``migrate`` on the source, poll to the end."""
    target.execute("migrate-incoming", uri=uri)
    source.execute("migrate-set-parameters", **{"downtime-limit": downtime_limit_ms, "max-bandwidth": max_bandwidth})
    started = time.monotonic()
    source.execute("migrate", uri=uri)
    deadline = started + timeout
    while True:
        info = source.execute("query-migrate")
        status = str(info.get("status", ""))
        if status == "completed":
            completed = time.monotonic()
            break
        if status in ("failed", "cancelled"):
            raise MigrationError(
                f"migration {status}: {info.get('error-desc', info)}; target log:\n{target.log_tail()}"
            )
        if time.monotonic() > deadline:
            with contextlib.suppress(MigrationError):
                source.execute("migrate_cancel")
            raise MigrationError(f"migration not done after {timeout:.0f}s: {info}")
        time.sleep(0.02)
    # the target resumes on its own (autostart) once the stream is in
    deadline = time.monotonic() + 30
    while (st := target.status()) != "running":
        if time.monotonic() > deadline:
            raise MigrationError(f"target is {st!r} after the migration, not running")
        time.sleep(0.02)
    return MigrationResult(
        started=started,
        completed=completed,
        status=status,
        qmp_downtime_ms=info.get("downtime"),
        qmp_total_ms=info.get("total-time"),
        qmp_setup_ms=info.get("setup-time"),
    )


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


@dataclass
class MigrationRun:
    """What one lab live migration measured (seconds unless named ``_ms``)."""

    ping_gap_s: float
    lost_replies: int
    qmp_downtime_ms: int | None
    qmp_total_ms: int | None
    migration_s: float
    replies_before: int
    replies_after: int
    target_rx_growth: int
    source_rx_growth_after: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MigrationLab:
    """One source VM pinging a testpmd (``icmpecho``) through a private OVS-DPDK bridge, migrated to a target VM.

    Layout under ``root`` (short, e.g. ``/tmp/vhp-xxxx``): ``links/`` (the shared stable folder, overlaid per mount
    namespace), ``src/``, ``dst/`` (each QEMU's files and device folder ``dev/``), ``peer/`` (testpmd's socket).
    ``close`` removes every process, port and bridge it made; the caller removes ``root``.
    """

    def __init__(self, ovs_run_dir: Path, endpoint: str, root: Path, unique: str, interval: float = 0.05) -> None:
        from vhostplug.lab.testpmd import Testpmd

        self.ovs_run_dir = ovs_run_dir
        self.endpoint = endpoint
        self.root = root
        self.unique = unique[:6]
        self.bridge = f"brm{self.unique}"
        self.ports = {k: f"vm{k}{self.unique}" for k in ("src", "dst", "peer")}
        links = root / "links"
        cmdline = f"vhp.ip=10.78.0.1/24 vhp.peer=10.78.0.2 vhp.interval={interval}"
        mac = "02:78:00:00:00:01"
        self.source = LabQemu(f"vhp-src-{self.unique}", root / "src", links, mac, cmdline)
        self.target = LabQemu(f"vhp-dst-{self.unique}", root / "dst", links, mac, cmdline, incoming=True)
        (root / "peer").mkdir(parents=True, exist_ok=True)
        self.peer_socket = root / "peer" / SOCKET_NAME
        self.testpmd = Testpmd([f"net_virtio_user0,path={self.peer_socket},server=1"], file_prefix=f"vhpm{self.unique}")
        self.watch = PingWatch([self.source.console_log, self.target.console_log])
        self.bridge_made = False

    def _add_port(self, key: str, path: Path) -> None:
        ovsdb.add_vhost_client_ports(self.endpoint, self.bridge, {self.ports[key]: str(path)})
        self.bridge_made = True

    def _del_port(self, key: str) -> None:
        ovsdb.del_port(self.endpoint, self.bridge, self.ports[key])

    def counters(self) -> dict[str, tuple[int, int]]:
        return port_counters(self.ovs_run_dir, self.bridge)

    def rx(self, key: str) -> int:
        return self.counters().get(self.ports[key], (0, 0))[0]

    def boot(self, timeout: float = 120.0) -> None:
        """testpmd answering pings, the source VM booted and pinging through OVS, the target waiting for the stream."""
        from vhostplug.lab.vms import Console

        self._add_port("peer", self.peer_socket)  # testpmd (server=1) waits for OVS before its first prompt
        self.testpmd.start()
        self.testpmd.cmd("set fwd icmpecho")
        self.testpmd.wait_link_up()
        self.testpmd.cmd("start")
        self.source.start()
        self._add_port("src", self.source.real_socket)
        self.source.connect_qmp()
        self.watch.start()
        Console(self.source.console_log).wait_for(r"VHP-PING-OK", timeout)
        self.target.start()
        self._add_port("dst", self.target.real_socket)
        self.target.connect_qmp()

    def run(self, uri: str, settle: float = 2.0) -> MigrationRun:
        t0 = time.monotonic()
        self.watch.wait_replies(10, t0, 30)
        replies_before = self.watch.count_since(t0)
        res = migrate(self.source, self.target, uri)
        src_status = self.source.status()
        if src_status != "postmigrate":
            raise MigrationError(f"source is {src_status!r} after the migration, not postmigrate")
        # the source pod goes away: its QEMU quits and its port is deleted (CNI DEL)
        src_rx_at_end = self.rx("src")
        self.source.stop()
        src_rx_after = self.rx("src") - src_rx_at_end
        self._del_port("src")
        dst_rx0 = self.rx("dst")
        t1 = time.monotonic()
        self.watch.wait_replies(10, t1, 30)
        time.sleep(settle)
        gap, lost = self.watch.max_gap(res.started, time.monotonic())
        return MigrationRun(
            ping_gap_s=round(gap, 4),
            lost_replies=lost,
            qmp_downtime_ms=res.qmp_downtime_ms,
            qmp_total_ms=res.qmp_total_ms,
            migration_s=round(res.completed - res.started, 4),
            replies_before=replies_before,
            replies_after=self.watch.count_since(res.completed),
            target_rx_growth=self.rx("dst") - dst_rx0,
            source_rx_growth_after=src_rx_after,
        )

    def close(self) -> list[str]:
        """Stop everything this lab made, in reverse order; never raises."""
        done = []
        self.watch.stop()
        for vm in (self.target, self.source):
            with contextlib.suppress(Exception):
                vm.stop()
                done.append(f"stopped {vm.name}")
        with contextlib.suppress(Exception):
            self.testpmd.stop()
            done.append("stopped testpmd")
        if self.bridge_made:
            with contextlib.suppress(Exception):
                ovsdb.del_bridge(self.endpoint, self.bridge)
                done.append(f"deleted bridge {self.bridge}")
        return done

    def __enter__(self) -> MigrationLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
