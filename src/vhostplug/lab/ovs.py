"""A private OVS-DPDK for tests and the lab: ovsdb-server and ovs-vswitchd-dpdk started by hand in our own folder.

Never touches the system's /var/run/openvswitch and needs no systemd. DPDK runs with ``--no-huge`` by default (or
2 MB hugepages on an own hugetlbfs mount, as a node runs it: ``vhostplug lab up`` takes them when the machine's pool
has room, :func:`hugepages_fit`), one PMD core, and is waited for until ``dpdk_initialized=true``. Its PMD polls all
the time, as a node's does, unless :data:`PMD_MAXSLEEP_ENV` lets it sleep while idle (the test suite does: an idle
PMD then leaves its core to the tests instead of spinning on it whenever a port exists).
``stop`` leaves nothing: no process, no run-dir file, no ``/var/run/dpdk/<prefix>``, no tap of a netdev bridge.

ovs-vswitchd runs in a network namespace of its own (only the network namespace: files and sockets are shared).
The netdev datapath makes a machine-global tap named ``ovs-netdev`` plus one tap per bridge; in its own namespace
each instance gets its own, so two private OVS-DPDKs can run at once and no tap can leak onto the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug import ovsvhost
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab import ovsdb

VSWITCHD_DPDK = Path("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")
OVSDB_SERVER = "ovsdb-server"
OVSDB_TOOL = "ovsdb-tool"
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DPDK_RUNTIME = Path("/var/run/dpdk")
# the log levels ovs-ctl starts both daemons with: without -vsyslog:err every INFO line also goes to syslog (or, with
# no /dev/log, to a failing connect), which at 1000 ports cost ovs-vswitchd ~10 ms per port added
OVS_CTL_LOG_LEVELS = ("-vconsole:emer", "-vsyslog:err", "-vfile:info")


HUGEPAGE_POOL = 1024  # 2 MB pages the lab keeps reserved (vm.nr_hugepages), shared by the machine's private OVSs
SOCKET_MEM_MB = 1024  # dpdk-socket-mem of one private OVS-DPDK on hugepages


def reserve_hugepages(pages: int = HUGEPAGE_POOL) -> None:
    """Raise the machine's 2 MB hugepage pool to ``pages`` (never lowers it: other instances may use it)."""
    nr = Path("/proc/sys/vm/nr_hugepages")
    if int(nr.read_text()) < pages:
        nr.write_text(str(pages))


def hugepages_free_mb() -> int:
    """Free memory in the machine's 2 MB hugepage pool, in MB (0 when /proc/meminfo has no hugepage lines)."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    try:
        return int(info["HugePages_Free"].split()[0]) * int(info["Hugepagesize"].split()[0]) // 1024
    except (KeyError, ValueError, IndexError):
        return 0


def hugepages_fit(mb: int = SOCKET_MEM_MB) -> bool:
    """Whether one more private OVS-DPDK fits on hugepages now (the pool raised to :data:`HUGEPAGE_POOL` first)."""
    with contextlib.suppress(OSError):
        reserve_hugepages()
    return hugepages_free_mb() >= mb


#: microseconds an idle PMD may sleep (OVS >= 3.1 ``other_config:pmd-maxsleep``, 0-10000); unset or 0: it never sleeps.
#: Costs up to that much latency on a lightly loaded port and nothing under load (a busy PMD does not sleep).
PMD_MAXSLEEP_ENV = "VHOSTPLUG_LAB_PMD_MAXSLEEP_US"


def pmd_maxsleep_from_env() -> int:
    """:data:`PMD_MAXSLEEP_ENV` as a number of microseconds; a value that is not one in 0-10000 is refused."""
    raw = os.environ.get(PMD_MAXSLEEP_ENV, "").strip() or "0"
    if not raw.isdigit() or int(raw) > 10000:
        raise ValueError(f"{PMD_MAXSLEEP_ENV}={raw!r}: expected microseconds, 0-10000")
    return int(raw)


class OvsStartError(RuntimeError):
    """The private OVS did not come up; the message carries the log tail."""


@dataclass(frozen=True)
class OvsConfig:
    pmd_cpu_mask: str = "0x2"
    memory_mb: int = 2048  # less makes the mbuf pool fail without hugepages
    hugepages: bool = False
    ready_timeout: float = 90.0
    pmd_maxsleep_us: int = field(default_factory=pmd_maxsleep_from_env)


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0): look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _kill_pidfile(pidfile: Path, expect: str, timeout: float = 10.0) -> int | None:
    """SIGTERM then SIGKILL the process named in ``pidfile`` if its command line contains ``expect``."""
    pid = _read_pid(pidfile)
    if pid is None or not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    if expect not in cmdline:
        return None  # a recycled pid: not ours
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)
    return pid


class PrivateOvs:
    """One private OVS-DPDK instance rooted at ``run_dir``."""

    def __init__(self, run_dir: Path, config: OvsConfig | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config or OvsConfig()
        self.prefix = "vhp-" + hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:10]

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def db_file(self) -> Path:
        return self.run_dir / "conf.db"

    @property
    def db_sock(self) -> Path:
        return self.run_dir / "db.sock"

    @property
    def endpoint(self) -> str:
        return f"unix:{self.db_sock}"

    @property
    def vswitchd_ctl(self) -> Path:
        return self.run_dir / "ovs-vswitchd.ctl"

    @property
    def ovsdb_ctl(self) -> Path:
        return self.run_dir / "ovsdb-server.ctl"

    @property
    def ovsdb_pidfile(self) -> Path:
        return self.run_dir / "ovsdb-server.pid"

    @property
    def vswitchd_pidfile(self) -> Path:
        return self.run_dir / "ovs-vswitchd.pid"

    @property
    def vswitchd_log(self) -> Path:
        return self.run_dir / "ovs-vswitchd.log"

    @property
    def ovsdb_log(self) -> Path:
        return self.run_dir / "ovsdb-server.log"

    @property
    def vhost_sock_dir(self) -> Path:
        """Where ovs-vswitchd creates the sockets of ``dpdkvhostuser`` ports (relative to OVS_RUNDIR)."""
        return self.run_dir / "vhost"

    @property
    def hugepage_dir(self) -> Path:
        return self.run_dir / "hugepages"

    @property
    def netns(self) -> str:
        return self.prefix

    @property
    def dpdk_runtime_dir(self) -> Path:
        return DPDK_RUNTIME / self.prefix

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OVS_RUNDIR=str(self.run_dir),
            OVS_DBDIR=str(self.run_dir),
            OVS_LOGDIR=str(self.run_dir),
            OVS_SYSCONFDIR=str(self.run_dir / "etc"),
        )
        return env

    # -- state -------------------------------------------------------------------------------------------------
    def pids(self) -> tuple[int | None, int | None]:
        def alive(p: Path) -> int | None:
            pid = _read_pid(p)
            return pid if pid is not None and pid_alive(pid) else None

        return alive(self.ovsdb_pidfile), alive(self.vswitchd_pidfile)

    def dpdk_initialized(self) -> bool:
        try:
            rows = ovsdb_rpc.select(self.endpoint, "Open_vSwitch", columns=["dpdk_initialized"])
        except ovsdb_rpc.OvsdbRpcError:
            return False
        return bool(rows) and rows[0].get("dpdk_initialized") is True

    def is_running(self) -> bool:
        ovsdb, vswitchd = self.pids()
        return ovsdb is not None and vswitchd is not None and self.dpdk_initialized()

    def status(self) -> dict[str, Any]:
        ovsdb, vswitchd = self.pids()
        return {
            "run_dir": str(self.run_dir),
            "ovsdb": str(self.db_sock),
            "dpdk_initialized": self.dpdk_initialized() if ovsdb else False,
            "pid_ovsdb": ovsdb,
            "pid_vswitchd": vswitchd,
            "vhost_sock_dir": str(self.vhost_sock_dir),
            "file_prefix": self.prefix,
        }

    # -- start -------------------------------------------------------------------------------------------------
    def _run(self, *cmd: str) -> None:
        proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise OvsStartError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()}")

    def _dpdk_other_config(self) -> dict[str, str]:
        cfg = {"dpdk-init": "true", "pmd-cpu-mask": self.config.pmd_cpu_mask, ovsvhost.OTHER_CONFIG_SOCK_DIR: "vhost"}
        if self.config.pmd_maxsleep_us:
            cfg["pmd-maxsleep"] = str(self.config.pmd_maxsleep_us)
        base = f"--no-pci --file-prefix={self.prefix}"
        if self.config.hugepages:
            cfg.update(
                {
                    "dpdk-socket-mem": str(SOCKET_MEM_MB),
                    "dpdk-socket-limit": str(SOCKET_MEM_MB),
                    "dpdk-extra": f"--huge-dir={self.hugepage_dir} {base}",
                }
            )
        else:
            cfg["dpdk-extra"] = f"--no-huge -m {self.config.memory_mb} --legacy-mem {base}"
        return cfg

    def _mount_hugepages(self) -> None:
        self.hugepage_dir.mkdir(exist_ok=True)
        if not os.path.ismount(self.hugepage_dir):
            reserve_hugepages()
            self._run("mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(self.hugepage_dir))

    def start(self) -> dict[str, Any]:
        """Start (or keep) the instance; returns :meth:`status`. Harmless when it already runs."""
        if self.is_running():
            return self.status()
        self.stop()  # whatever half-state a crash left
        if not VSWITCHD_DPDK.exists():
            raise OvsStartError(f"{VSWITCHD_DPDK} is missing: install openvswitch-switch-dpdk (make setup)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o755)
        (self.run_dir / "etc").mkdir(exist_ok=True)
        self.vhost_sock_dir.mkdir(exist_ok=True)
        if self.config.hugepages:
            self._mount_hugepages()
        try:
            self._run(OVSDB_TOOL, "create", str(self.db_file), str(SCHEMA))
            self._start_ovsdb()
            other = self._dpdk_other_config()
            ovsdb.init_database(self.endpoint, other)
            self._start_vswitchd()
        except (OvsStartError, ovsdb_rpc.OvsdbRpcError) as exc:
            tail = _log_tail(self.vswitchd_log if self.vswitchd_log.exists() else self.ovsdb_log)
            self.stop()
            raise OvsStartError(f"private OVS-DPDK failed to start: {exc}\n--- log tail ---\n{tail}") from exc
        return self.status()

    def _wait_for(self, cond: Any, timeout: float, what: str, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            _, vswitchd = self.pids()
            if log == self.vswitchd_log and vswitchd is None and self.vswitchd_pidfile.exists():
                raise OvsStartError(f"ovs-vswitchd exited while waiting for {what}")
            time.sleep(0.1)
        raise OvsStartError(f"timed out after {timeout:.0f}s waiting for {what}")

    # -- restart (for tests of reconnects) ---------------------------------------------------------------------
    def kill_vswitchd(self, sig: int = signal.SIGKILL) -> None:
        pid = _read_pid(self.vswitchd_pidfile)
        if pid and pid_alive(pid):
            os.kill(pid, sig)
            while pid_alive(pid):
                time.sleep(0.05)

    def restart_vswitchd(self) -> None:
        self.kill_vswitchd(signal.SIGTERM)
        self.start_vswitchd()

    def start_vswitchd(self) -> None:
        """Start ovs-vswitchd again on the running database (after :meth:`kill_vswitchd`)."""
        # a killed vswitchd leaves the sockets of dpdkvhostuser ports behind and then fails to bind them
        for sock in self.vhost_sock_dir.glob("*"):
            if sock.is_socket():
                sock.unlink()
        self._start_vswitchd()

    def restart_ovsdb(self, sig: int = signal.SIGKILL) -> None:
        """Kill ovsdb-server (``sig``) and start it again on the same database (for fault tests)."""
        pid = _read_pid(self.ovsdb_pidfile)
        if pid and pid_alive(pid):
            os.kill(pid, sig)
            while pid_alive(pid):
                time.sleep(0.05)
        self._start_ovsdb()

    def signal_ovsdb(self, sig: int) -> None:
        """Send ``sig`` to ovsdb-server (SIGSTOP / SIGCONT: a hung database, for fault tests)."""
        pid = _read_pid(self.ovsdb_pidfile)
        if pid and pid_alive(pid):
            os.kill(pid, sig)

    def _start_ovsdb(self) -> None:
        self._run(
            OVSDB_SERVER,
            str(self.db_file),
            f"--remote=punix:{self.db_sock}",
            f"--pidfile={self.ovsdb_pidfile}",
            f"--unixctl={self.ovsdb_ctl}",
            f"--log-file={self.ovsdb_log}",
            *OVS_CTL_LOG_LEVELS,
            "--detach",
        )
        self._wait_for(lambda: self.db_sock.exists(), 10, "ovsdb-server socket", self.ovsdb_log)

    def _start_vswitchd(self) -> None:
        if not Path(f"/var/run/netns/{self.netns}").exists():
            self._run("ip", "netns", "add", self.netns)
        self._run(
            "nsenter",
            f"--net=/var/run/netns/{self.netns}",
            str(VSWITCHD_DPDK),
            f"unix:{self.db_sock}",
            f"--pidfile={self.vswitchd_pidfile}",
            f"--unixctl={self.vswitchd_ctl}",
            f"--log-file={self.vswitchd_log}",
            *OVS_CTL_LOG_LEVELS,
            "--detach",
        )
        self._wait_for(self.dpdk_initialized, self.config.ready_timeout, "dpdk_initialized=true", self.vswitchd_log)

    # -- stop --------------------------------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop and remove everything; works after a crash too. Returns what it did, one line each."""
        done: list[str] = []
        bridges = ovsdb.bridge_names(self.endpoint)
        if bridges and self.pids()[1] is not None:
            # delete bridges while vswitchd runs so it removes their taps itself, and wait until it has applied it
            with contextlib.suppress(ovsdb_rpc.OvsdbRpcError):
                ovsdb.clear_bridges(self.endpoint)
        if (pid := _kill_pidfile(self.vswitchd_pidfile, "ovs-vswitchd")) is not None:
            done.append(f"stopped ovs-vswitchd (pid {pid})")
        if (pid := _kill_pidfile(self.ovsdb_pidfile, "ovsdb-server")) is not None:
            done.append(f"stopped ovsdb-server (pid {pid})")
        if Path(f"/var/run/netns/{self.netns}").exists():
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
            done.append(
                f"removed network namespace {self.netns} (and the bridges' taps: {', '.join(bridges) or 'none'})"
            )
        if self.hugepage_dir.exists() and os.path.ismount(self.hugepage_dir):
            subprocess.run(["umount", str(self.hugepage_dir)], capture_output=True, check=False)
        if self.dpdk_runtime_dir.exists():
            shutil.rmtree(self.dpdk_runtime_dir, ignore_errors=True)
            done.append(f"removed {self.dpdk_runtime_dir}")
        for name in (
            "conf.db",
            ".conf.db.~lock~",
            "db.sock",
            "ovs-vswitchd.ctl",
            "ovsdb-server.ctl",
            "ovsdb-server.pid",
            "ovs-vswitchd.pid",
            "ovs-vswitchd.log",
            "ovsdb-server.log",
        ):
            p = self.run_dir / name
            if p.exists() or p.is_symlink():
                p.unlink()
        for d in (self.vhost_sock_dir, self.run_dir / "etc", self.hugepage_dir):
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
        return done

    def __enter__(self) -> PrivateOvs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
