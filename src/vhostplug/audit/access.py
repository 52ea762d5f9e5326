"""Who QEMU and ovs-vswitchd run as, what a socket file looks like, and whether a process may connect to it.

QEMU's identity comes from a running QEMU process when there is one, else from ``/etc/libvirt/qemu.conf`` (``user``,
``group``) or libvirt's defaults (``libvirt-qemu`` on Debian, ``qemu`` elsewhere), with the supplementary groups libvirt
gives it (``getgrouplist``). ovs-vswitchd's comes from its pidfile. Connecting to a unix socket needs write permission.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QEMU_CONF = Path("/etc/libvirt/qemu.conf")


@dataclass(frozen=True)
class Principal:
    """A process identity: what it is called, its uid and every gid it holds."""

    name: str
    uid: int
    gids: frozenset[int]
    origin: str = ""

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def group_names(self) -> list[str]:
        return sorted(_group_name(g) for g in self.gids)


@dataclass(frozen=True)
class FileInfo:
    path: str
    exists: bool
    is_socket: bool = False
    uid: int = -1
    gid: int = -1
    mode: int = 0

    @property
    def owner(self) -> str:
        return _user_name(self.uid) if self.exists else ""

    @property
    def group(self) -> str:
        return _group_name(self.gid) if self.exists else ""

    @property
    def mode_string(self) -> str:
        return stat.filemode(self.mode) if self.exists else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "exists": self.exists,
            "is_socket": self.is_socket,
            "owner": self.owner,
            "group": self.group,
            "mode": self.mode_string,
        }


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def file_info(path: str) -> FileInfo:
    try:
        st = os.lstat(path)
    except OSError:
        return FileInfo(path=path, exists=False)
    return FileInfo(path, True, stat.S_ISSOCK(st.st_mode), st.st_uid, st.st_gid, st.st_mode)


def can_connect(who: Principal, info: FileInfo) -> bool:
    """Whether ``who`` may connect to the socket ``info`` (write permission; root always may)."""
    if who.is_root:
        return True
    if who.uid == info.uid:
        return bool(info.mode & stat.S_IWUSR)
    if info.gid in who.gids:
        return bool(info.mode & stat.S_IWGRP)
    return bool(info.mode & stat.S_IWOTH)


def principal_of_pid(pid: int, name: str = "") -> Principal | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        uid = int(fields["Uid"].split()[1])  # effective
        gids = {int(fields["Gid"].split()[1]), *(int(g) for g in fields.get("Groups", "").split())}
    except (KeyError, IndexError, ValueError):
        return None
    return Principal(name or _user_name(uid), uid, frozenset(gids), f"process {pid}")


def principal_of_pidfile(pidfile: Path, name: str) -> Principal | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return principal_of_pid(pid, name)


def _conf_value(text: str, key: str) -> str | None:
    m = re.search(rf'^\s*{key}\s*=\s*"([^"]*)"', text, re.MULTILINE)
    return m.group(1) if m else None


def principal_of_user(user: str, group: str | None, origin: str) -> Principal | None:
    """``user`` with ``group`` as primary gid (or the user's own) plus the groups it is a member of."""
    try:
        pw = pwd.getpwnam(user) if not user.startswith("+") else pwd.getpwuid(int(user[1:]))
    except (KeyError, ValueError):
        return None
    try:
        gid = (grp.getgrnam(group).gr_gid if not group.startswith("+") else int(group[1:])) if group else pw.pw_gid
    except (KeyError, ValueError):
        gid = pw.pw_gid
    return Principal(pw.pw_name, pw.pw_uid, frozenset(os.getgrouplist(pw.pw_name, gid)), origin)


def qemu_principal(user: str | None = None, group: str | None = None, conf: Path = QEMU_CONF) -> Principal | None:
    """QEMU's identity as libvirt runs it: explicit, else qemu.conf, else the distribution default."""
    text = ""
    with contextlib.suppress(OSError):
        text = conf.read_text()
    user = user or _conf_value(text, "user")
    group = group or _conf_value(text, "group")
    origin = "qemu.conf" if text and (user or group) else "libvirt default"
    for candidate in [user] if user else ["libvirt-qemu", "qemu"]:
        if candidate is None:
            continue
        default_group = group
        if default_group is None:
            try:
                grp.getgrnam(candidate)
                default_group = candidate
            except KeyError:
                default_group = None
        found = principal_of_user(candidate, default_group, origin)
        if found:
            return found
    return None


def ovs_principal(rundir: str) -> Principal | None:
    return principal_of_pidfile(Path(rundir) / "ovs-vswitchd.pid", "ovs-vswitchd")
