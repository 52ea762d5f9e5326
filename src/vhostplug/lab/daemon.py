"""The lab's background processes (the node agent, the stand-in kube-apiserver): started in a session of their own
with a log and a pidfile so they outlive the `vhostplug lab up` that started them, waited for until they serve, and
stopped from the pidfile alone (SIGTERM, then SIGKILL after 10 s), also after a crash."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from vhostplug.lab.ovs import pid_alive

T = TypeVar("T")


class DaemonError(RuntimeError):
    """It did not come up; the message has its command and its log's tail."""


def pid_of(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` when that process is alive."""
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start(
    argv: Sequence[str],
    log: Path,
    pidfile: Path,
    serving: Callable[[], T | None],
    what: str,
    timeout: float = 20.0,
    also: Iterable[Path] = (),
) -> T:
    """Start ``argv`` and wait until ``serving()`` answers something (returned); on failure stop it, remove
    ``pidfile`` and ``also``, and raise :class:`DaemonError`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := serving()) is not None:
            return got
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(pidfile, also)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise DaemonError(f"{what} did not come up ({' '.join(argv)}):\n{tail}")


def stop(pidfile: Path, also: Iterable[Path] = ()) -> int | None:
    """Stop the process of ``pidfile`` (if alive) and remove ``pidfile`` and ``also``; returns its pid."""
    pid = pid_of(pidfile)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for p in (pidfile, *also):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return pid
