"""Lab pods: what a container runtime gives a pod, made by hand with iproute2 and util-linux.

A lab pod is a network namespace (``ip netns add``, as the runtime's sandbox) plus a long-lived holder process in its
own mount namespace (``unshare --mount --propagation private sleep infinity``, as the pause container). Commands run
"in the pod" with ``nsenter --net --mount``. The pod sees the host's files except where it has its own mounts: a
private tmpfs on ``/var/run/vhostplug`` (where kubelet bind-mounts device folders), ``/var/run/kubernetes.io`` (DRA device metadata) and on ``/etc/podnetinfo`` (the
downward API volume). Files are written into the pod's view through ``/proc/<holder>/root``.

Everything here is also undoable from recorded facts alone (netns name, holder pid and its start time), so a
crashed demo can be cleaned up by ``vhostplug lab down``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/var/run/netns")
#: folders that get a private tmpfs inside each lab pod (mount points made on the host when missing)
POD_TMPFS = ("/var/run/vhostplug", "/etc/podnetinfo", "/var/run/kubernetes.io")
ANNOTATIONS = "/etc/podnetinfo/annotations"


class PodError(RuntimeError):
    """A lab pod step failed; the message names the command and its output."""


def run(cmd: Sequence[str], what: str, timeout: float = 30.0, stdin: str | None = None) -> str:
    """Run ``cmd``; raise :class:`PodError` naming ``what``, the command and its output on failure."""
    try:
        proc = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PodError(f"{what}: `{' '.join(cmd)}` failed: {exc}") from exc
    if proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise PodError(f"{what}: `{' '.join(cmd)}` exited {proc.returncode}: {out}")
    return proc.stdout


# ---- processes identified by pid + start time (a recycled pid is never ours) -------------------------------------
def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/<pid>/stat), None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


@dataclass(frozen=True)
class ProcRef:
    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcRef:
        st = start_time(pid)
        if st is None:
            raise PodError(f"process {pid} is gone")
        return cls(pid, st)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start

    def kill(self, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL; True when it was alive."""
        if not self.alive():
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.alive():
                break
        return True


def pids_with_arg(arg: str) -> list[int]:
    """Pids whose command line holds ``arg`` as one exact argument."""
    want = arg.encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in argv:
            out.append(int(entry.name))
    return out


# ---- the pod ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabPod:
    """One lab pod: its name, namespace, UID, network namespace and mount-namespace holder."""

    name: str
    namespace: str
    uid: str
    netns: str
    holder: ProcRef

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)

    @property
    def mnt_ns(self) -> str:
        return f"/proc/{self.holder.pid}/ns/mnt"

    def nsenter(self) -> list[str]:
        """The prefix that runs a command inside the pod (its network and mount namespaces)."""
        return ["nsenter", f"--net={self.netns_path}", f"--mount={self.mnt_ns}", "--"]

    def exec(self, *cmd: str, what: str, timeout: float = 30.0) -> str:
        return run([*self.nsenter(), *cmd], f"{what} (in pod {self.name})", timeout)

    def path(self, container_path: str) -> Path:
        """A path of the pod's own view, reachable from the host."""
        return Path(f"/proc/{self.holder.pid}/root") / container_path.lstrip("/")

    def write(self, container_path: str, text: str) -> None:
        p = self.path(container_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabPod:
        return cls(data["name"], data["namespace"], data["uid"], data["netns"], ProcRef(**data["holder"]))


def ensure_host_dirs(paths: Sequence[str]) -> list[str]:
    """Make the mount points a pod's private tmpfs needs; return the ones we made (to remove at cleanup)."""
    made = []
    for p in paths:
        path = Path(p).resolve()
        if not path.exists():
            path.mkdir(parents=True)
            made.append(str(path))
    return made


def create_pod(name: str, namespace: str, uid: str, netns: str, tmpfs: Sequence[str] = POD_TMPFS) -> LabPod:
    """Network namespace + mount-namespace holder with private tmpfs mounts; undone by :func:`delete_pod`."""
    run(["ip", "netns", "add", netns], f"create the network namespace of pod {name}")
    try:
        run(["ip", "-n", netns, "link", "set", "lo", "up"], f"bring up lo in pod {name}")
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives a demo killed from its terminal: `lab down` cleans it up
        )
        own = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{proc.pid}/ns/mnt") == own or b"sleep" not in _cmdline(proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PodError(f"the mount-namespace holder of pod {name} did not start")
            time.sleep(0.01)
        pod = LabPod(name, namespace, uid, netns, ProcRef.of(proc.pid))
    except BaseException:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        raise
    try:
        for folder in tmpfs:
            # the mount point is shared with the host's tree: another lab on the machine may have removed the one
            # ensure_host_dirs made, so make sure it is there (in the pod's namespace: the same folder)
            run(["nsenter", f"--mount={pod.mnt_ns}", "--", "mkdir", "-p", folder], f"mount point {folder}")
            run(
                ["nsenter", f"--mount={pod.mnt_ns}", "--", "mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", folder],
                f"private tmpfs on {folder} in pod {name}",
            )
    except BaseException:
        delete_pod(pod)
        raise
    return pod


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def delete_pod(pod: LabPod) -> list[str]:
    """Kill the holder (its mounts go with its namespace) and delete the network namespace."""
    done = []
    if pod.holder.kill():
        done.append(f"stopped the mount-namespace holder of pod {pod.name} (pid {pod.holder.pid})")
    if (NETNS_DIR / pod.netns).exists():
        subprocess.run(["ip", "netns", "del", pod.netns], capture_output=True, check=False)
        done.append(f"deleted netns {pod.netns}")
    return done
