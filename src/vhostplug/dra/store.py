"""The DRA driver's claim store: one JSON file per prepared claim under ``<stateDir>/dra/`` (0600 in a 0700
folder), written *before* Prepare's first side effect (phase ``preparing``: what it is about to make) and again when
it is done (``prepared``), removed once Unprepare removed everything it lists. It is the only licence to remove
anything: a restarted agent rolls back claims left ``preparing`` and checks ``prepared`` ones against OVS.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vhostplug import fsutil

LOG = logging.getLogger(__name__)
PREPARING, PREPARED = "preparing", "prepared"


@dataclass(frozen=True)
class DeviceRecord:
    request: str
    pool: str
    device: str
    kind: str
    cdi_device_id: str
    #: vhost-user: the port and its attachment (enough to make it again), the host folder and whether we made it
    port_name: str = ""
    folder: str = ""
    folder_made: bool = False
    socket_name: str = ""
    container_folder: str = ""
    mode: str = "server"
    bridge: str = ""
    mac: str = ""
    mtu: int | None = None
    vlan: int | None = None
    policing_rate: int | None = None
    policing_burst: int | None = None
    queues: int | None = None
    #: vDPA: the vhost-vdpa character device handed to the container (its path there and on the host), or the
    #: virtio netdev a CNI moves into the pod
    dev_node: str = ""
    dev_node_host: str = ""
    netdev: str = ""
    vdpa_device: str = ""
    #: vDPA: its VF representor, put on ``bridge`` as a system port (``port_name``), and its state before
    representor: str = ""
    rep_mtu: int | None = None
    rep_up: bool = False
    metadata_file: str = ""


@dataclass(frozen=True)
class ClaimRecord:
    uid: str
    namespace: str
    name: str
    pod_claim_name: str | None
    phase: str
    devices: tuple[DeviceRecord, ...] = ()
    cdi_files: tuple[str, ...] = ()
    metadata_dir: str = ""
    #: whether Prepare wrote status.devices entries (Unprepare then takes ours out again)
    status_written: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClaimRecord:
        return cls(
            uid=str(data["uid"]),
            namespace=str(data["namespace"]),
            name=str(data["name"]),
            pod_claim_name=data.get("pod_claim_name"),
            phase=str(data["phase"]),
            devices=tuple(DeviceRecord(**d) for d in data.get("devices") or ()),
            cdi_files=tuple(data.get("cdi_files") or ()),
            metadata_dir=str(data.get("metadata_dir", "")),
            status_written=bool(data.get("status_written", False)),
            extra=dict(data.get("extra") or {}),
        )


class ClaimStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _name(self, uid: str) -> str:
        fsutil.check_component(uid, "claim UID")
        return f"{uid}.json"

    def save(self, record: ClaimRecord) -> None:
        if not self.root.exists():
            old = os.umask(0o077)
            try:
                self.root.mkdir(parents=True, mode=0o700, exist_ok=True)
            finally:
                os.umask(old)
        fsutil.write_json_in(self.root, self._name(record.uid), record.to_json(), mode=0o600)

    def load(self, uid: str) -> ClaimRecord | None:
        return self._read(self._name(uid))

    def _read(self, name: str) -> ClaimRecord | None:
        try:
            data = fsutil.read_json_in(self.root, name)
            return None if data is None else ClaimRecord.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            LOG.warning("ignoring unreadable claim record %s: %s", self.root / name, exc)
            return None

    def remove(self, uid: str) -> bool:
        with contextlib.suppress(FileNotFoundError):
            return fsutil.unlink_in(self.root, self._name(uid))
        return False

    def all(self) -> list[ClaimRecord]:
        try:
            names = sorted(n for n in os.listdir(self.root) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        return [r for r in map(self._read, names) if r is not None]
