"""The socket folder of a vhost-user attachment on disk: what it was before ADD, giving that back, removing it when
it is empty, and removing a stale socket in it; every step acts on the entry itself, never through a link."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from vhostplug import fsutil
from vhostplug.cni.records import FolderPrior

LOG = logging.getLogger(__name__)


def unlink_socket(folder: Path, name: str) -> bool:
    """Remove ``folder/name`` when it is a socket or a link (a socket left by an earlier user makes a bind fail)."""
    path = folder / name
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return fsutil.unlink_in(folder, name)
    return False


def folder_prior(folder: Path) -> FolderPrior | None:
    """Owner, group and mode of an existing folder (None: it does not exist)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    return FolderPrior(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def restore_folder(folder: Path, prior: FolderPrior) -> None:
    """Give the folder back its owner, group and mode from before ADD (gone is fine)."""
    try:
        fd = fsutil.open_dir_nofollow(folder)
    except FileNotFoundError:
        return
    try:
        os.fchown(fd, prior.uid, prior.gid)
        os.fchmod(fd, prior.mode)
    finally:
        os.close(fd)


def rmdir_if_empty(folder: Path) -> None:
    """Remove a folder ADD made, unless something else was put in it (then it stays, logged)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise fsutil.UnsafePathError(f"{folder} is no longer a folder")
    try:
        os.rmdir(folder)
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        LOG.warning("leaving %s: it holds entries the agent did not make", folder)
