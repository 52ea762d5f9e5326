"""The agent's record of what ADD made for each attachment, so DEL and GC never depend on the network config.

One JSON file per attachment (``<root>/<sha256 of "cid/ifname">.json``, 0600 in a 0700 folder owned by the agent),
written by ADD after its first side effect and removed by DEL/GC once everything it lists is gone. It says which port,
which folder (and whether the agent made it, or the owner/mode it had before), which entries in that folder, which
device-info file, and what an IPAM release needs (the plugin type, its section, the network name and version).
The record is the only licence to remove files: without it DEL touches the port of the attachment (found in OVSDB by
its external_ids) and nothing on disk that it cannot prove it made.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vhostplug import fsutil
from vhostplug.cni.spec import TRY_AGAIN_LATER, CniError
from vhostplug.model import attachment_key

LOG = logging.getLogger(__name__)
DEFAULT_ROOT = Path("/var/lib/vhostplug/attachments")


@dataclass(frozen=True)
class FolderPrior:
    """Owner and mode a folder had before ADD re-owned it (a device folder the agent did not make)."""

    uid: int
    gid: int
    mode: int


@dataclass(frozen=True)
class Record:
    container_id: str
    ifname: str
    network: str
    port_name: str
    folder: str
    folder_made: bool
    socket_name: str
    config_file: str
    folder_prior: FolderPrior | None = None
    devinfo_file: str | None = None
    #: what an IPAM DEL needs: {"cniVersion", "name", "ipam"} as ADD saw them; None when no IPAM was used
    ipam_conf: dict[str, Any] | None = None
    cni_path: tuple[str, ...] = field(default=())
    #: what the first ADD answered (its MAC and the IPAM plugin's result): a repeated ADD answers the same
    mac: str = ""
    ipam_result: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return attachment_key(self.container_id, self.ifname)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cni_path"] = list(self.cni_path)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        prior = data.get("folder_prior")
        return cls(
            container_id=str(data["container_id"]),
            ifname=str(data["ifname"]),
            network=str(data.get("network", "")),
            port_name=str(data["port_name"]),
            folder=str(data["folder"]),
            folder_made=bool(data.get("folder_made", False)),
            socket_name=str(data.get("socket_name", "")),
            config_file=str(data.get("config_file", "")),
            folder_prior=FolderPrior(**prior) if isinstance(prior, dict) else None,
            devinfo_file=data.get("devinfo_file"),
            ipam_conf=data.get("ipam_conf"),
            cni_path=tuple(data.get("cni_path") or ()),
            mac=str(data.get("mac") or ""),
            ipam_result=data.get("ipam_result") if isinstance(data.get("ipam_result"), dict) else None,
        )


def file_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest() + ".json"


class RecordStore:
    """The records under one root folder (made 0700 on first write)."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def _ensure_root(self) -> None:
        if not self.root.exists():
            old = os.umask(0o077)
            try:
                self.root.mkdir(parents=True, mode=0o700, exist_ok=True)
            finally:
                os.umask(old)

    def save(self, record: Record) -> None:
        """Write the record; a full or read-only state folder is CniError 11 naming the folder (logged once here)."""
        try:
            self._ensure_root()
            fsutil.write_json_in(self.root, file_name(record.key), record.to_json(), mode=0o600)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            what = "read-only" if exc.errno == errno.EROFS else "full"
            LOG.warning("cannot record attachment %s: the state folder %s is %s", record.key, self.root, what)
            raise CniError(
                TRY_AGAIN_LATER,
                f"the vhostplug agent's state folder {self.root} is {what}",
                f"{exc.strerror}; nothing of this ADD is left in place; free space there, then try again",
            ) from None

    def load(self, container_id: str, ifname: str) -> Record | None:
        return self._read(file_name(attachment_key(container_id, ifname)))

    def _read(self, name: str) -> Record | None:
        try:
            data = fsutil.read_json_in(self.root, name)
            return None if data is None else Record.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            LOG.warning("ignoring unreadable attachment record %s: %s", self.root / name, exc)
            return None

    def remove(self, container_id: str, ifname: str) -> bool:
        with contextlib.suppress(FileNotFoundError):
            return fsutil.unlink_in(self.root, file_name(attachment_key(container_id, ifname)))
        return False

    def all(self) -> list[Record]:
        try:
            names = sorted(n for n in os.listdir(self.root) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        return [r for r in map(self._read, names) if r is not None]
