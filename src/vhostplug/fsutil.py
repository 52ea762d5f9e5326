"""Symlink-safe filesystem work in folders a pod can write to: make, empty, own and remove, never following links.

Everything here works on a folder through an ``openat`` discipline: the folder is opened with
``O_NOFOLLOW|O_DIRECTORY`` and entries inside are made, removed, owned and moved relative to that descriptor (owner
and mode of a socket through an ``O_PATH`` descriptor checked with ``fstat``), so a symlink planted by a pod in its
shared folder is unlinked or refused, never followed, and never raced between a check and a use.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UnsafePathError(Exception):
    """A path is not what we may touch: a symlink, not a folder, or outside its root."""


@dataclass(frozen=True)
class Ownership:
    """Owner, group and mode for folders and sockets shared between OVS, QEMU and apps."""

    user: str | int = 0
    group: str | int = 0
    dir_mode: int = 0o770
    socket_mode: int = 0o660

    @property
    def uid(self) -> int:
        return self.user if isinstance(self.user, int) else pwd.getpwnam(self.user).pw_uid

    @property
    def gid(self) -> int:
        return self.group if isinstance(self.group, int) else grp.getgrnam(self.group).gr_gid

    def resolved(self, where: str) -> Ownership:
        """The same with numeric ids, looked up now; ValueError naming ``where`` and the name that does not exist.

        Names resolve against the password and group files of wherever the agent runs (its container's, in a pod),
        which need not know the node's groups: resolve at start, not at the first ADD."""
        try:
            uid = self.uid
        except KeyError:
            raise ValueError(f"{where}.user: no user {self.user!r} here; give the node's numeric uid") from None
        try:
            gid = self.gid
        except KeyError:
            raise ValueError(
                f"{where}.group: no group {self.group!r} here (names resolve against the agent container's own "
                "/etc/group); give the node's numeric gid"
            ) from None
        return Ownership(uid, gid, self.dir_mode, self.socket_mode)


def check_component(name: str, what: str = "name") -> None:
    """Refuse anything that could escape a folder when used as one path component."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnsafePathError(f"{what} {name!r} is not a plain file name (no '/', '..' or NUL allowed)")


def open_dir_nofollow(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePathError(f"{path} is a symlink; refusing to follow it") from exc
        raise


def ensure_dir(path: Path, own: Ownership | None = None) -> bool:
    """Make ``path`` (one level, parent must exist) or accept an existing real folder; True when we made it.

    A symlink or a non-folder at ``path`` raises :class:`UnsafePathError` and is left as it is.
    """
    made = False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o700)
        made = True
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symlink; refusing to follow it")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} exists and is not a folder")
    if own is not None:
        fd = open_dir_nofollow(path)
        try:
            os.fchown(fd, own.uid, own.gid)
            os.fchmod(fd, own.dir_mode)
        finally:
            os.close(fd)
    return made


def empty_dir(path: Path) -> list[str]:
    """Remove everything inside the real folder ``path`` without following any symlink; return what went."""
    fd = open_dir_nofollow(path)
    try:
        return _empty_fd(fd)
    finally:
        os.close(fd)


def _empty_fd(fd: int) -> list[str]:
    removed: list[str] = []
    for name in os.listdir(fd):
        st = os.lstat(name, dir_fd=fd)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                _empty_fd(sub)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
        removed.append(name)
    return removed


def remove_dir(path: Path) -> bool:
    """Empty and remove a real folder (a symlink there is only unlinked). False when nothing was there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return True
    empty_dir(path)
    os.rmdir(path)
    return True


def unlink_in(folder: Path, name: str) -> bool:
    """Unlink ``folder/name`` (never following a symlink at ``folder``); False when it was not there."""
    check_component(name)
    try:
        fd = open_dir_nofollow(folder)
    except FileNotFoundError:
        return False
    try:
        os.unlink(name, dir_fd=fd)
        return True
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return False
    finally:
        os.close(fd)


def write_file_in(folder: Path, name: str, data: bytes, mode: int = 0o644, own: Ownership | None = None) -> Path:
    """Atomically write ``folder/name``: a temp file made with O_EXCL|O_NOFOLLOW, then renamed over the name."""
    check_component(name)
    fd_dir = open_dir_nofollow(folder)
    tmp = f".vhp-{secrets.token_hex(8)}.tmp"  # short: ``name`` may already use all 255 bytes a name can have
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd_dir)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
            if own is not None:
                os.fchown(fd, own.uid, own.gid)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=fd_dir, dst_dir_fd=fd_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=fd_dir)
        raise
    finally:
        os.close(fd_dir)
    return folder / name


def write_json_in(folder: Path, name: str, obj: Any, mode: int = 0o644, own: Ownership | None = None) -> Path:
    return write_file_in(folder, name, json.dumps(obj, indent=2, sort_keys=True).encode() + b"\n", mode, own)


def read_json_in(folder: Path, name: str) -> Any:
    """The JSON in ``folder/name``, opened through the folder's fd without following a link at either step; None
    when the folder or the file is not there. ``ValueError`` when it does not parse."""
    try:
        root = open_dir_nofollow(folder)
    except FileNotFoundError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
    except FileNotFoundError:
        return None
    finally:
        os.close(root)
    with os.fdopen(fd, "rb") as f:
        return json.loads(f.read())


def is_socket(path: Path) -> bool:
    """Whether ``path`` itself (a link is not followed) is a unix socket."""
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def set_socket_owner_at(dir_fd: int, name: str, own: Ownership) -> None:
    """chown/chmod the unix socket ``name`` in the folder ``dir_fd`` without a window for a swapped link.

    The entry is opened with ``O_PATH|O_NOFOLLOW`` (a symlink is opened as itself), checked to be a socket with
    ``fstat`` on that descriptor, and changed through ``/proc/self/fd/N``, which names exactly that inode: whatever
    a pod renames or links in the folder meanwhile, no other file's owner or mode can change.
    """
    check_component(name)
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISSOCK(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a unix socket"
            raise UnsafePathError(f"{name} is {kind}; refusing to change its owner or mode")
        via = f"/proc/self/fd/{fd}"
        os.chown(via, own.uid, own.gid)
        os.chmod(via, own.socket_mode)
    finally:
        os.close(fd)
