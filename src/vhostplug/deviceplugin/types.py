"""The device plugin's shared types, below every kind: what a kind is given of the node (:class:`NodeContext`), the
kind of fixed devices (:class:`FixedKind`), the dataplane probe's shape, the socket root's write check and the bounded
rendering of device IDs in messages.

The seams themselves (``DeviceSource``, ``DeviceKind``, ``DeviceState``, ``AllocateError``) are in
:mod:`vhostplug.protocols`; this module imports nothing of the device plugin, so every kind, the registry
(:mod:`vhostplug.deviceplugin.kinds`), the server and the manager can import it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vhostplug.protocols import DeviceSource

#: the dataplane probe a kind's health may include: (ok, detail)
HealthProbe = Callable[[], tuple[bool, str]]

#: device IDs named in one error message at most
SHOWN_IDS = 5


@dataclass(frozen=True)
class NodeContext:
    """What every kind may need of the node: the agent's folders and its dataplane probe."""

    socket_root: Path
    devinfo_dir: Path
    container_root: str
    health_probe: HealthProbe


@dataclass(frozen=True)
class FixedKind:
    """A kind whose devices are known from its config (vhostuser, the socket root): nothing to discover."""

    sources: tuple[DeviceSource, ...]
    rescan_seconds: float | None = None

    def rescan(self) -> None:
        pass


def describe_ids(ids: Sequence[str]) -> str:
    """A bounded rendering of device IDs for messages and logs: the first few (each cut short), then a count."""
    shown = [i if len(i) <= 40 else i[:37] + "..." for i in ids[:SHOWN_IDS]]
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return f"{shown}{more}"


def root_writable(root: Path) -> tuple[bool, str]:
    """A real folder we can create a file in (``os.access`` alone says yes to root on a read-only mount)."""
    try:
        st = os.lstat(root)
    except OSError as exc:
        return False, f"socket root {root}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return False, f"socket root {root} is not a folder"
    if not os.access(root, os.W_OK | os.X_OK):
        return False, f"socket root {root} is not writable"
    name = f".vhostplug-probe-{os.getpid()}"
    try:
        fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        os.unlink(root / name)
    except OSError as exc:
        return False, f"socket root {root} is not writable: {exc.strerror or exc}"
    return True, ""
