"""A device plugin manager and a lab kubelet talking real gRPC over unix sockets in a short temporary folder."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vhostplug.deviceplugin.config import load_config
from vhostplug.deviceplugin.manager import DevicePluginManager
from vhostplug.deviceplugin.vhostuser import VhostUserDevices
from vhostplug.lab.kubelet import LabKubelet

VU = "vhostplug.io/vhostuser"
DP = "vhostplug.io/dataplane"


@dataclass
class Probe:
    """A health probe the test can flip."""

    ok: bool = True
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> tuple[bool, str]:
        with self.lock:
            self.calls += 1
            return self.ok, "" if self.ok else "OVSDB unreachable (test)"


@dataclass
class Rig:
    root: Path
    dp_dir: Path
    socket_root: Path
    devinfo: Path
    container_root: str
    probe: Probe
    kubelet: LabKubelet
    manager: DevicePluginManager


def vhostuser_source(rig: Rig) -> VhostUserDevices:
    source = rig.manager.sources[VU]
    assert isinstance(source, VhostUserDevices)
    return source


def make_rig(root: Path, config: dict[str, Any] | None = None, probe: Any = None) -> Rig:
    cfg = {"healthSeconds": 0.2, "vhostuser": {"count": 4}}
    cfg.update(config or {})
    dp_dir, socket_root, devinfo = root / "dp", root / "s", root / "di"
    kubelet = LabKubelet(dp_dir)
    kubelet.start()
    p = probe if probe is not None else Probe()
    manager = DevicePluginManager(
        load_config(cfg),
        socket_root=socket_root,
        device_plugin_dir=dp_dir,
        devinfo_dir=devinfo,
        container_root=str(root / "c"),
        health_probe=p,
    )
    manager.start()
    return Rig(root, dp_dir, socket_root, devinfo, str(root / "c"), p, kubelet, manager)


@pytest.fixture
def rig(short_dir: Path) -> Iterator[Rig]:
    r = make_rig(short_dir)
    try:
        yield r
    finally:
        r.manager.stop()
        r.kubelet.stop()
