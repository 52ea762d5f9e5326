"""Bad input through the real shim: the spec's error JSON with the right code, and nothing left behind."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from vhostplug_testsupport.cniagent import AgentProc, CniResult


def _leftovers(agent: AgentProc) -> list[str]:
    files = [str(p) for p in agent.socket_root.rglob("*")] if agent.socket_root.exists() else []
    return files + agent.our_ports()


CASES: list[tuple[str, dict[str, Any] | str, dict[str, str], int, str]] = [
    ("malformed JSON", "{not json", {}, 6, "not a JSON object"),
    ("JSON array", "[1, 2]", {}, 6, "not a JSON object"),
    ("unknown key", {"bridgee": "br0"}, {}, 7, "bridgee: unknown key"),
    ("unknown mode", {"mode": "sideways"}, {}, 7, "mode"),
    ("wrong type", {"type": "other"}, {}, 7, "type"),
    ("vlan out of range", {"vlan": 5000}, {}, 7, "vlan"),
    ("mtu too small", {"mtu": 10}, {}, 7, "mtu"),
    ("relative socketRoot", {"socketRoot": "var/run"}, {}, 7, "absolute path"),
    ("dotdot socketRoot", {"socketRoot": "/tmp/../etc"}, {}, 7, "without '..'"),
    ("device ID with slash", {"deviceID": "a/b"}, {}, 7, "deviceID"),
    ("device ID dotdot", {"runtimeConfig": {"deviceID": ".."}}, {}, 7, "deviceID"),
    ("unsupported version", {"cniVersion": "9.9.9"}, {}, 1, "not supported"),
    ("no common version", {"cniVersions": ["0.5.0", "2.0.0"]}, {}, 1, "none of the cniVersions"),
    ("container ID with slash", {}, {"CNI_CONTAINERID": "a/b"}, 4, "CNI_CONTAINERID"),
    ("container ID dotdot", {}, {"CNI_CONTAINERID": ".."}, 4, "CNI_CONTAINERID"),
    ("container ID with dotdot inside", {}, {"CNI_CONTAINERID": "a..b"}, 4, "CNI_CONTAINERID"),
    ("missing container ID", {}, {"CNI_CONTAINERID": ""}, 4, "CNI_CONTAINERID is required"),
    ("ifname too long", {}, {"CNI_IFNAME": "abcdefghijklmnop"}, 4, "the limit is 15"),
    ("ifname with slash", {}, {"CNI_IFNAME": "a/b"}, 4, "CNI_IFNAME"),
    ("ifname dotdot", {}, {"CNI_IFNAME": ".."}, 4, "CNI_IFNAME"),
    ("missing netns", {}, {"CNI_NETNS": ""}, 4, "CNI_NETNS is required"),
    ("IPAM plugin the node does not allow", {"ipam": {"type": "no-such-ipam"}}, {}, 7, "host-local, static"),
    ("bridge the node does not allow", {"bridge": "br-other"}, {}, 7, "this node allows: br-cni, br-vhost"),
    ("bridge name not ASCII", {"bridge": "br\u202eevil"}, {}, 7, "bridge"),
    ("bridge name with shell characters", {"bridge": ";id"}, {}, 7, "bridge"),
    ("socketRoot the node does not allow", {"socketRoot": "/etc"}, {}, 7, "socketRoot '/etc' is not allowed"),
    ("deviceID of no allocation", {"deviceID": "vunotalloc"}, {}, 7, "deviceID"),
    (
        "devinfo file outside the devinfo root",
        {"runtimeConfig": {"CNIDeviceInfoFile": "/etc/x.json"}},
        {},
        7,
        "CNIDeviceInfoFile",
    ),
    ("IPAM failure", {"ipam": {"type": "host-local"}}, {}, 102, "IPAM plugin host-local ADD failed"),
    ("bad kuryr input", {"neutronPort": {"vif_type": "ovs"}}, {}, 7, "kuryr"),
]


@pytest.mark.parametrize(("what", "conf", "env", "code", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_add_input(
    agent: AgentProc, unique: str, what: str, conf: dict[str, Any] | str, env: dict[str, str], code: int, text: str
) -> None:
    stdin: dict[str, Any] | str = conf if isinstance(conf, str) else agent.netconf(allocate=False, **conf)
    kw: dict[str, str] = {"container_id": f"bad{unique}", "ifname": "net1", "netns": "/var/run/netns/x"}
    kw.update({"container_id": env.get("CNI_CONTAINERID", kw["container_id"])} if "CNI_CONTAINERID" in env else {})
    kw.update({"ifname": env["CNI_IFNAME"]} if "CNI_IFNAME" in env else {})
    kw.update({"netns": env["CNI_NETNS"]} if "CNI_NETNS" in env else {})
    r = agent.run("ADD", stdin, **kw)
    assert r.code == 1, f"{what}: expected failure, got {r.raw}"
    assert set(r.out) <= {"cniVersion", "code", "msg", "details"} and r.out["cniVersion"]
    assert r.out["code"] == code, r.raw
    assert text in r.out["msg"] + r.out.get("details", ""), r.raw
    assert _leftovers(agent) == [], f"{what} left something behind"


def test_socket_path_too_long_names_length_and_limit(agent: AgentProc, unique: str) -> None:
    long_root = "/var/run/" + "x" * 100
    agent.stop()
    agent.extra["containerSocketRoots"] = [long_root]
    agent.start()
    r = agent.run("ADD", agent.netconf(containerSocketRoot=long_root), f"long{unique}")
    assert r.code == 1 and r.out["code"] == 7
    assert "container socket path" in r.out["msg"]
    assert "bytes; the limit for a unix socket path is 107" in r.out["msg"]
    assert _leftovers(agent) == []


def test_symlink_where_the_folder_should_be_is_never_followed(agent: AgentProc, unique: str, short_dir: Path) -> None:
    agent.socket_root.mkdir(parents=True, exist_ok=True)
    target = short_dir / "victim"
    target.mkdir()
    os.chmod(target, 0o700)
    link = agent.socket_root / f"evil{unique}"
    link.symlink_to(target)
    r = agent.run("ADD", agent.netconf(runtimeConfig={"deviceID": f"evil{unique}"}), f"sym{unique}")
    assert r.code == 1 and r.out["code"] == 101 and "symlink" in r.out["msg"]
    assert link.is_symlink(), "the planted link must stay as it is"
    assert list(target.iterdir()) == [] and oct(target.stat().st_mode & 0o777) == "0o700"
    assert agent.our_ports() == []
    link.unlink()


def test_failure_after_port_creation_rolls_the_port_back(agent: AgentProc, unique: str) -> None:
    """The device-info file cannot be written (its folder is a file): port, folder and config must be rolled back."""
    blocker = agent.devinfo_root / f"blk{unique}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    conf = agent.netconf(runtimeConfig={"deviceID": f"rb{unique}", "CNIDeviceInfoFile": str(blocker / "info.json")})
    mode = os.lstat(agent.socket_root / f"rb{unique}").st_mode
    r = agent.run("ADD", conf, f"rb{unique}")
    assert r.code == 1, r.raw
    assert agent.our_ports() == []
    # the device folder (the device plugin's) is left empty, with its mode back
    assert list((agent.socket_root / f"rb{unique}").iterdir()) == []
    assert os.lstat(agent.socket_root / f"rb{unique}").st_mode == mode


def test_shim_without_agent_fails_fast_with_try_again(agent: AgentProc, unique: str) -> None:
    agent.stop()

    def run(verb: str) -> tuple[str, CniResult]:
        conf = agent.netconf(prevResult={"interfaces": []}) if verb == "CHECK" else agent.netconf()
        return verb, agent.run(verb, conf, f"gone{unique}")

    # each shim waits up to its verb's deadline for an agent to appear (2-5 s): the four run side by side
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, ("DEL", "CHECK", "STATUS", "GC")))
    for verb, r in results:
        assert r.code == 1 and r.out["code"] == 11, (verb, r.raw)
        assert r.seconds < 8, f"{verb} took {r.seconds:.1f}s without an agent"
    r = agent.run("ADD", json.dumps({**agent.netconf(), "agentSocket": "relative/path"}), f"x{unique}")
    assert r.out["code"] == 7
