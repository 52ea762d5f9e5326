"""`vhostplug agent` refuses bad configuration before starting anything, naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
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


@pytest.mark.parametrize(("config", "expect"), CASES, ids=[c[1] for c in CASES])
def test_bad_config_stops_the_agent_naming_the_key(short_dir: Path, config: dict[str, object], expect: str) -> None:
    listen = short_dir / "agent.sock"
    config = {"listen": str(listen), "devicePluginDir": str(short_dir / "dp"), **config}
    path = short_dir / "agent.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run([VHOSTPLUG, "agent", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr
    assert not listen.exists(), "a refused configuration still started the CNI server"
    assert not (short_dir / "dp").exists() or list((short_dir / "dp").iterdir()) == []


def test_yaml_config_and_flag_overrides(short_dir: Path) -> None:
    from vhostplug.agent.config import load

    path = short_dir / "agent.yaml"
    path.write_text("socketRoot: /tmp/a\ndataplane:\n  ovsdb: unix:/tmp/db.sock\n")
    cfg = load(path, {"socketRoot": "/tmp/b", "ovsdb": "unix:/tmp/other.sock", "listen": None})
    assert str(cfg.socket_root) == "/tmp/b" and cfg.dataplane.ovsdb == "unix:/tmp/other.sock"
    assert str(cfg.listen) == "/run/vhostplug/agent.sock"
