"""`vhostplug agent` refuses bad configuration before starting anything, naming the key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

VHOSTPLUG = str(Path(sys.executable).with_name("vhostplug"))

CASES = [
    ({"listne": "/tmp/x.sock"}, "listne: unknown key"),
    ({"dataplane": {"backend": "ovs", "ovsdbb": "x"}}, "dataplane.ovsdbb: unknown key"),
    ({"ownership": {"dirMode": "999"}}, "ownership.dirMode"),
    ({"relocateSeconds": -1}, "relocateSeconds"),
    ({"dataplane": {"backend": "nope"}}, "unknown dataplane backend 'nope'"),
    # the in-memory test double is no backend of the product (vhostplug_testsupport.noopdataplane)
    ({"dataplane": {"backend": "noop"}}, "dataplane.backend: unknown dataplane backend 'noop'; known: ovs"),
    ({"devicePlugin": {"vhostuser": {"count": 0}}}, "devicePlugin"),
    ({"devicePlugin": {"colour": "blue"}}, "colour"),
    # names resolve in the agent's own (container's) /etc/group: a missing one stops the start, not the first ADD
    ({"ownership": {"group": "no-such-group-vhp"}}, "ownership.group: no group 'no-such-group-vhp'"),
    ({"ownership": {"user": "no-such-user-vhp"}}, "ownership.user: no user 'no-such-user-vhp'"),
    ({"devicePlugin": {"vhostuser": {"group": "no-such-group-vhp"}}}, "devicePlugin.vhostuser.group: no group"),
]


IDS = [c[1] for c in CASES]


def _refuse(folder: Path, config: dict[str, object]) -> subprocess.CompletedProcess[str]:
    config = {"listen": str(folder / "agent.sock"), "devicePluginDir": str(folder / "dp"), **config}
    path = folder / "agent.json"
    path.write_text(json.dumps(config))
    return subprocess.run([VHOSTPLUG, "agent", "--config", str(path)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def refused() -> Iterator[dict[str, tuple[Path, subprocess.CompletedProcess[str]]]]:
    """Every case's agent, each in its own folder: the starts are independent, so they run side by side."""
    folders = [Path(tempfile.mkdtemp(prefix="vhp-cfg-", dir="/tmp")) for _ in CASES]
    try:
        with ThreadPoolExecutor(4) as pool:
            procs = list(pool.map(_refuse, folders, [c[0] for c in CASES]))
        yield dict(zip(IDS, zip(folders, procs, strict=True), strict=True))
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("expect", IDS, ids=IDS)
def test_bad_config_stops_the_agent_naming_the_key(
    refused: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], expect: str
) -> None:
    folder, proc = refused[expect]
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr
    assert not (folder / "agent.sock").exists(), "a refused configuration still started the CNI server"
    assert not (folder / "dp").exists() or list((folder / "dp").iterdir()) == []


def test_yaml_config_and_flag_overrides(short_dir: Path) -> None:
    from vhostplug.agent.config import load

    path = short_dir / "agent.yaml"
    path.write_text("socketRoot: /tmp/a\ndataplane:\n  ovsdb: unix:/tmp/db.sock\n")
    cfg = load(path, {"socketRoot": "/tmp/b", "ovsdb": "unix:/tmp/other.sock", "listen": None})
    assert str(cfg.socket_root) == "/tmp/b" and cfg.dataplane.ovsdb == "unix:/tmp/other.sock"
    assert str(cfg.listen) == "/run/vhostplug/agent.sock"
