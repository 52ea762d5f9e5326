"""The demo's record of what it made (``<run_dir>/demo/state.json``, saved before each thing is made) and the names
unique to one run folder. Cleanup works from this record alone, so it also undoes a crashed or killed demo.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class State:
    """What the demo made, saved after every change: ``cleanup`` works from this file alone."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "demo" / "state.json"
        self.data: dict[str, Any] = {
            "pods": [],
            "attachments": [],
            "testpmd_prefixes": [],
            "sidecars": [],
            "domains": [],
            "libvirt_started": [],
            "host_dirs": [],
            "vdpa_parts": [],
            "dra_claims": [],
            "host_mounts": [],
        }
        with contextlib.suppress(OSError, ValueError):
            self.data.update(json.loads(self.path.read_text()))

    def add(self, key: str, value: Any) -> None:
        self.data[key].append(value)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class Names:
    """Names unique to one run folder (another lab may run beside this one)."""

    tag: str

    @classmethod
    def of(cls, run_dir: Path) -> Names:
        return cls(hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:6])

    def netns(self, who: str) -> str:
        return f"vhp{self.tag}-{who}"

    def bridge(self, kind: str) -> str:
        return f"vh{kind}{self.tag}"  # the netdev bridge is also a host tap: unique per lab

    def prefix(self, who: str) -> str:
        return f"vhp{self.tag}{who}"

    def domain(self, who: str) -> str:
        return f"vhp-{self.tag}-{who}"
