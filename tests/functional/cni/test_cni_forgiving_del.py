"""DEL and GC work from what ADD stored, not from the network config: a config broken or edited since ADD, an empty
CNI_NETNS, no prevResult, a second DEL all succeed and remove everything; only an unreachable dataplane (11) or a stored
path that became unsafe (101, left as it is) make DEL fail. Real shim, agent and private OVS-DPDK."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import port_name_for
from vhostplug_testsupport.cniagent import AgentProc, make_agent


def _ipam(agent: AgentProc, subnet: str = "10.91.0.0/24") -> dict[str, Any]:
    return {"type": "host-local", "subnet": subnet, "dataDir": str(agent.root / "ipam")}


def _leases(agent: AgentProc, network: str = "vhnet") -> list[str]:
    d = agent.root / "ipam" / network
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def _everything_gone(agent: AgentProc, cid: str, folder: Path) -> None:
    assert port_name_for(cid, "net1") not in agent.our_ports()
    assert not folder.exists(), f"{folder} left: {list(folder.iterdir())}"
    assert _leases(agent) == []
    assert not any((agent.root / "state").iterdir()), "the attachment record was left"


BROKEN: list[tuple[str, dict[str, Any] | str]] = [
    ("unknown key", {"promiscMode": True}),
    ("bad value", {"mode": "sideways"}),
    ("wrong type", {"type": "bridge"}),
    ("IPAM section removed", {"ipam": None}),
    ("IPAM moved elsewhere", {"ipam": {"type": "host-local", "subnet": "10.92.0.0/24", "dataDir": "/nonexistent"}}),
    ("unsupported version", {"cniVersion": "9.9.9"}),
    ("only the agent socket left", "minimal"),
]


@pytest.mark.parametrize(("what", "edit"), BROKEN, ids=[b[0] for b in BROKEN])
def test_del_under_a_config_broken_since_add_removes_everything(
    agent: AgentProc, unique: str, what: str, edit: dict[str, Any] | str
) -> None:
    cid = f"brk{unique}"
    conf = agent.netconf(ipam=_ipam(agent))
    r = agent.run("ADD", conf, cid)
    assert r.code == 0, r.raw
    folder = Path(r.out["interfaces"][0]["socketPath"]).parent
    assert folder.is_dir() and len(_leases(agent)) == 1
    if isinstance(edit, str):
        broken: dict[str, Any] = {"agentSocket": str(agent.socket)}
    else:
        broken = {k: v for k, v in {**conf, **edit}.items() if v is not None}
        # ADD (and CHECK) keep refusing the broken config
        if what not in ("IPAM section removed", "IPAM moved elsewhere"):
            bad = agent.run("CHECK", {**broken, "prevResult": r.out}, cid)
            assert bad.code == 1 and bad.out["code"] in (1, 7), bad.raw
    # containerd's first DEL (netns, prevResult), then its second (neither): both succeed
    d1 = agent.run("DEL", broken if isinstance(broken, str) else {**broken, "prevResult": r.out}, cid)
    assert d1.code == 0, d1.raw
    d2 = agent.run("DEL", broken, cid, netns="")
    assert d2.code == 0, d2.raw
    _everything_gone(agent, cid, folder)


def test_del_with_empty_netns_and_no_prev_result_twice(agent: AgentProc, unique: str) -> None:
    cid = f"nons{unique}"
    conf = agent.netconf(ipam=_ipam(agent), runtimeConfig={"deviceID": f"d{unique}"})
    r = agent.run("ADD", conf, cid)
    assert r.code == 0, r.raw
    folder = agent.socket_root / f"d{unique}"
    for _ in range(2):
        d = agent.run("DEL", conf, cid, netns="")
        assert d.code == 0 and d.raw == "", d.raw
    assert port_name_for(cid, "net1") not in agent.our_ports()
    assert _leases(agent) == []
    assert not (folder / f"{cid}-net1").exists()


def test_del_without_any_record_touches_no_file(agent: AgentProc, unique: str) -> None:
    """A DEL for an attachment this agent never made must not remove a folder that happens to have its name."""
    folder = agent.socket_root / f"ab{unique}-net9"
    folder.mkdir(parents=True)
    (folder / "precious").write_text("keep me")
    (folder / "vhu.sock").write_text("not ours either")
    r = agent.run("DEL", agent.netconf(deviceID=f"ab{unique}-net9"), f"ab{unique}", ifname="net9")
    assert r.code == 0, r.raw
    assert (folder / "precious").read_text() == "keep me"
    assert (folder / "vhu.sock").read_text() == "not ours either"


def test_del_refuses_a_stored_folder_that_became_a_symlink_and_leaves_it(
    agent: AgentProc, unique: str, short_dir: Path
) -> None:
    cid = f"usf{unique}"
    conf = agent.netconf(runtimeConfig={"deviceID": f"u{unique}"})
    assert agent.run("ADD", conf, cid).code == 0
    folder = agent.socket_root / f"u{unique}"
    victim = short_dir / "victim"
    victim.mkdir()
    (victim / f"{cid}-net1").write_text("victim's file")
    os.rename(folder, short_dir / "moved")
    folder.symlink_to(victim)
    r = agent.run("DEL", conf, cid)
    assert r.code == 1 and r.out["code"] == 101, r.raw
    assert str(folder) in r.out["msg"] and "symlink" in r.out["msg"]
    assert folder.is_symlink() and (victim / f"{cid}-net1").read_text() == "victim's file"
    # once the admin removes the link, DEL succeeds
    folder.unlink()
    assert agent.run("DEL", conf, cid).code == 0
    assert port_name_for(cid, "net1") not in agent.our_ports()


def test_gc_with_a_broken_config_removes_what_it_is_not_asked_to_keep(agent: AgentProc, unique: str) -> None:
    conf = agent.netconf(ipam=_ipam(agent))
    keep, drop = f"gck{unique}", f"gcd{unique}"
    for cid in (keep, drop):
        assert agent.run("ADD", conf, cid).code == 0
    assert len(_leases(agent)) == 2
    broken = {k: v for k, v in conf.items() if k != "ipam"}
    broken.update(mode="sideways", promiscMode=True)
    gc = agent.run("GC", {**broken, "cni.dev/valid-attachments": [{"containerID": keep, "ifname": "net1"}]})
    assert gc.code == 0, gc.raw
    names = agent.our_ports()
    assert port_name_for(keep, "net1") in names and port_name_for(drop, "net1") not in names
    assert len(_leases(agent)) == 1, "GC did not free the dropped attachment's address from its record"
    assert agent.run("DEL", broken, keep).code == 0
    assert agent.our_ports() == [] and _leases(agent) == []


def test_del_with_an_unreachable_dataplane_is_try_again(private_ovs: PrivateOvs, unique: str) -> None:
    agent = make_agent(private_ovs, ovsdb=f"unix:/tmp/vhp-dead-{unique}.sock")
    try:
        r = agent.run("DEL", {"not": "a vhostplug config"}, f"dead{unique}", netns="")
        assert r.code == 1 and r.out["code"] == 11, r.raw
    finally:
        agent.stop()
        agent.dataplane.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("stdin", [b"{not json", b"", b"[]", b'{"a": ' * 100 + b"1" + b"}" * 100])
def test_del_with_an_undecodable_config_goes_to_the_agent_and_removes_everything(
    agent: AgentProc, unique: str, stdin: bytes
) -> None:
    """A config that is not even a JSON object any more: the shim cannot read agentSocket from it, so it asks the
    node's agent (VHOSTPLUG_AGENT_SOCKET from the runtime's environment, else the default), which works from its record."""
    cid = f"undec{unique}"
    r = agent.run("ADD", agent.netconf(ipam=_ipam(agent)), cid)
    assert r.code == 0, r.raw
    folder = Path(r.out["interfaces"][0]["socketPath"]).parent
    env = {**agent.cni_env("DEL", cid, "net1", CNI_NETNS=""), "VHOSTPLUG_AGENT_SOCKET": str(agent.socket)}
    for _ in range(2):
        d = agent.exec_shim(env, stdin)
        assert d.code == 0 and d.stdout == b"", (d.stdout, d.stderr)
    _everything_gone(agent, cid, folder)
    # ADD and CHECK still refuse such a config, at once and in the CNI error format
    add = agent.exec_shim({**agent.cni_env("ADD", cid, "net1"), "VHOSTPLUG_AGENT_SOCKET": str(agent.socket)}, stdin)
    assert add.code == 1 and b'"code": 6' in add.stdout, add.stdout
