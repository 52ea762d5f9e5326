"""Client-mode (``dpdkvhostuser``) sockets: OVS makes them in its vhost-sock-dir; the pod finds them in its own folder.

:func:`place` moves one socket into the pod's folder race-free (the folder opened ``O_DIRECTORY|O_NOFOLLOW``, the
rename and the owner/mode change made relative to it); :func:`wait_and_place` waits for OVS to make it first, at ADD;
:func:`sockets_in` lists what OVS re-made after an ovs-vswitchd restart, for the backend's relocator.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from vhostplug import fsutil
from vhostplug.fsutil import is_socket
from vhostplug.protocols import DataplaneError, SocketPlacementError


def place(src: Path, folder: Path, name: str, own: fsutil.Ownership) -> None:
    """Move ``src`` to ``folder/name`` and give it ``own``'s owner and socket mode, following no link in ``folder``."""
    try:
        dir_fd = fsutil.open_dir_nofollow(folder)
    except fsutil.UnsafePathError as exc:
        raise SocketPlacementError(f"cannot move the vhost-user socket {src}: {exc}") from None
    except OSError as exc:
        raise SocketPlacementError(f"cannot open the socket folder {folder}: {exc.strerror}") from None
    dst = folder / name
    try:
        fsutil.check_component(name)
        try:
            os.rename(src, name, dst_dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise SocketPlacementError(
                    f"cannot move the vhost-user socket {src} to {dst}: EXDEV (cross-device link); "
                    "OVS's vhost-sock-dir and the socket root must be on one filesystem for client mode"
                ) from None
            raise SocketPlacementError(f"cannot move the vhost-user socket {src} to {dst}: {exc.strerror}") from None
        try:
            fsutil.set_socket_owner_at(dir_fd, name, own)
        except (fsutil.UnsafePathError, OSError) as exc:
            raise SocketPlacementError(f"cannot set the owner of {dst}: {exc}") from None
    finally:
        os.close(dir_fd)


def wait_and_place(src: Path, folder: Path, name: str, own: fsutil.Ownership, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not is_socket(src):
        if time.monotonic() > deadline:
            raise DataplaneError(f"OVS did not create the client-mode socket {src} within {wait:.0f}s")
        time.sleep(0.01)
    place(src, folder, name, own)


def sockets_in(folder: Path) -> list[str]:
    """Names of the unix sockets in ``folder`` (empty when it cannot be read)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if is_socket(folder / e.name))
    except OSError:
        return []
