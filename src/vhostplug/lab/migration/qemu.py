"""One lab QEMU in a mount namespace of its own, as it would be in its own virt-launcher pod.

Each QEMU runs under ``unshare --mount --propagation private``: inside, a small tmpfs is mounted on the shared links
folder and holds the symlink ``<links>/<iface>`` -> that QEMU's own device folder. Both command lines name the same
stable socket path ``<links>/<iface>/vhu.sock`` (what the sidecar writes into the domain XML), while each QEMU binds
its server socket in its own device folder, where its own ``dpdkvhostuserclient`` OVS port looks for it. The namespace
lives exactly as long as its QEMU (``unshare`` execs it), so ending the process is the whole cleanup.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhostplug.lab.migration import MigrationError
from vhostplug.lab.migration.qmp import Qmp
from vhostplug.lab.vms import GUEST_CMDLINE, Guest

QEMU = "qemu-system-x86_64"
SOCKET_NAME = "vhu.sock"

# runs inside the new mount namespace: a private tmpfs on the links folder, our own link in it, then QEMU
_NS_SCRIPT = 'mount -t tmpfs -o size=64k,mode=0755 vhp-links "$1" && ln -s "$2" "$1/$3" && shift 3 && exec "$@"'


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
            f"{self.name},debug-threads=on",  # threads named by role ("CPU 0/TCG"): the timeline's CPU accounting
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
            f"{GUEST_CMDLINE} {self.cmdline}".strip(),
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
