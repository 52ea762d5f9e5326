"""The CNI contract's corners through the real shim, agent and private OVS-DPDK: a repeated ADD answers the first ADD's
result from the record (same IPs, MAC, socket) and the later DEL removes everything; every IPAM process the agent
starts is reaped on every path (counted: the agent has no child left); a chained ADD passes prevResult through and
extends it; GC needs a valid keep list and cniVersion >= 1.1.0 and removes nothing otherwise; a full or read-only
state folder is code 11 naming the folder, with one log line and nothing half-made."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import port_name_for
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent


def _ipam(agent: AgentProc, subnet: str = "10.93.0.0/24") -> dict[str, Any]:
    return {"type": "host-local", "subnet": subnet, "dataDir": str(agent.root / "ipam")}


def _children(agent: AgentProc) -> list[str]:
    """The agent's child processes (IPAM plugins alive or unreaped), as 'pid comm state'."""
    assert agent.proc is not None
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm_end = text.rindex(")")
        fields = text[comm_end + 2 :].split()
        if int(fields[1]) == agent.proc.pid:
            out.append(f"{stat.parent.name} {text[text.index('(') + 1 : comm_end]} {fields[0]}")
    return out


def _leases(agent: AgentProc) -> list[str]:
    d = agent.root / "ipam" / "vhnet"
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def test_a_repeated_add_answers_the_first_result_and_del_removes_everything(agent: AgentProc, unique: str) -> None:
    cid = f"rep{unique}"
    conf = agent.netconf(ipam=_ipam(agent))
    first = agent.run("ADD", conf, cid)
    assert first.code == 0, first.raw
    record_files = sorted((agent.root / "state").iterdir())
    second = agent.run("ADD", conf, cid)
    assert second.code == 0, second.raw
    assert second.out == first.out  # same IPs, MAC, socket: from the record, nothing redone
    assert first.out["ips"], first.out
    assert sorted((agent.root / "state").iterdir()) == record_files
    other = agent.run("ADD", agent.netconf(ipam=_ipam(agent), mode="client"), cid)  # asks for something else
    assert other.code == 1 and other.out["code"] == 7 and "DEL it first" in other.out["details"], other.raw
    assert _children(agent) == []
    folder = Path(first.out["interfaces"][0]["socketPath"]).parent
    assert agent.run("DEL", conf, cid).code == 0
    assert not folder.exists(), list(folder.iterdir())
    assert port_name_for(cid, "net1") not in agent.our_ports()
    assert _leases(agent) == [] and not any((agent.root / "state").iterdir())


def test_every_ipam_process_is_reaped_on_every_path(agent: AgentProc, unique: str) -> None:
    ok = agent.netconf(ipam=_ipam(agent))
    failing_ipam = agent.netconf(ipam={"type": "host-local"})  # no subnet: the plugin fails
    refused_port = agent.netconf(ipam=_ipam(agent), mtu=70000)  # IPAM runs, then OVS refuses the port (MTU)
    first = agent.run("ADD", ok, f"a{unique}")
    steps = [
        ("ADD", ok, f"a{unique}", 0),  # repeated
        ("CHECK", {**ok, "prevResult": first.out}, f"a{unique}", 0),
        ("ADD", failing_ipam, f"b{unique}", 102),
        ("ADD", refused_port, f"c{unique}", None),
        ("DEL", ok, f"a{unique}", 0),
        ("DEL", failing_ipam, f"b{unique}", 0),
        ("DEL", refused_port, f"c{unique}", 0),
    ]
    assert first.code == 0, first.raw
    assert _children(agent) == []
    for verb, conf, cid, want in steps:
        r = agent.run(verb, conf, cid)
        if want is None:
            assert r.code == 1, (verb, cid, r.raw)
        else:
            assert (r.out.get("code") if r.code else 0) == want, (verb, cid, r.raw)
        assert _children(agent) == [], (verb, cid)
    assert _leases(agent) == []


def test_a_chained_add_passes_prev_result_through_and_extends_it(agent: AgentProc, unique: str) -> None:
    cid = f"ch{unique}"
    prev = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/test"}],
        "ips": [{"address": "10.244.0.5/24", "gateway": "10.244.0.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.96.0.10"]},
    }
    conf = agent.netconf(ipam=_ipam(agent), prevResult=prev)
    r = agent.run("ADD", conf, cid)
    assert r.code == 0, r.raw
    assert r.out["interfaces"][0] == prev["interfaces"][0]
    assert [i["name"] for i in r.out["interfaces"]] == ["eth0", "net1"]
    assert r.out["ips"][0] == prev["ips"][0]
    assert r.out["ips"][1]["address"].startswith("10.93.0.") and r.out["ips"][1]["interface"] == 1
    assert {"dst": "0.0.0.0/0"} in r.out["routes"] and r.out["dns"] == prev["dns"]
    assert agent.run("DEL", conf, cid).code == 0


BAD_KEEP_LISTS: dict[str, dict[str, Any]] = {
    "missing": {},
    "null": {"cni.dev/valid-attachments": None},
    "not-a-list": {"cni.dev/valid-attachments": "all"},
    "entry-without-ifname": {"cni.dev/valid-attachments": [{"containerID": "x"}]},
    "version-1.0.0": {"cni.dev/valid-attachments": [], "cniVersion": "1.0.0"},
}


def test_gc_without_a_valid_keep_list_removes_nothing(agent: AgentProc, unique: str) -> None:
    cid = f"gc{unique}"
    conf = agent.netconf()
    assert agent.run("ADD", conf, cid).code == 0
    for case, keep in BAD_KEEP_LISTS.items():  # one agent for all five: each must leave the attachment in place
        r = agent.run("GC", {**conf, **keep})
        want = 1 if keep.get("cniVersion") == "1.0.0" else 7
        assert r.code == 1 and r.out["code"] == want, (case, r.raw)
        assert port_name_for(cid, "net1") in agent.our_ports(), case
        assert any((agent.root / "state").iterdir()), case
    assert agent.run("GC", {**conf, "cni.dev/valid-attachments": []}).code == 0  # a valid empty list: all go
    assert port_name_for(cid, "net1") not in agent.our_ports()
    assert not any((agent.root / "state").iterdir())


@pytest.fixture
def small_state(private_ovs: PrivateOvs, short_dir: Path) -> Iterator[tuple[AgentProc, Path]]:
    state = short_dir / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)], check=True)
    a = make_agent(private_ovs, stateDir=str(state / "records"))
    try:
        yield a, state
    finally:
        stop_agent(a)
        subprocess.run(["umount", str(state)], check=False)


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_state_folder_is_try_again_naming_it(
    small_state: tuple[AgentProc, Path], unique: str, fault: str
) -> None:
    agent, state = small_state
    conf = agent.netconf(ipam=_ipam(agent))
    assert agent.run("ADD", conf, f"pre{unique}").code == 0  # the records folder exists and works
    assert agent.run("DEL", conf, f"pre{unique}").code == 0
    if fault == "full":
        filler = state / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=64"], capture_output=True)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
    try:
        r = agent.run("ADD", conf, f"full{unique}")
        assert r.code == 1 and r.out["code"] == 11, r.raw
        assert str(state / "records") in r.out["msg"] and fault in r.out["msg"], r.out
        log = agent.log_text()
        assert log.count(f"is {fault}") == 1 and "Traceback" not in log, log[-2000:]
        assert agent.leftovers() == [] and _leases(agent) == [] and _children(agent) == []
    finally:
        if fault == "full":
            filler.unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
    assert agent.run("ADD", conf, f"full{unique}").code == 0  # space again: it works, no restart
    assert agent.run("DEL", conf, f"full{unique}").code == 0
