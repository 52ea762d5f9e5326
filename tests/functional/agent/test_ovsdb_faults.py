"""An OVSDB that hangs or restarts, seen through the real shim and agent on a private OVS of this module's own:
every verb answers 11 ("try again") within its deadline, also 20 at once, STATUS 50 within 2 s whatever is queued,
never code 5; nothing of an ADD that answered an error stays (not even a transaction OVSDB applies after its
return); once OVSDB is back, requests succeed with no restart and STATUS says ready only when ADD works."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import own_private_ovs
from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent
from vhostplug_testsupport.containerd_node import free_port
from vhostplug_testsupport.fuzz import assert_cni_output, assert_no_traceback


@pytest.fixture(scope="module")
def own_ovs() -> Iterator[PrivateOvs]:
    """This module's own OVS: its tests hang and kill ovsdb-server, which the session's tests must not see."""
    with own_private_ovs("vhp-ovsf-") as ovs:
        yield ovs


@pytest.fixture
def fault_agent(own_ovs: PrivateOvs) -> Iterator[AgentProc]:
    a = make_agent(own_ovs, metricsPort=free_port())
    try:
        yield a
    finally:
        own_ovs.signal_ovsdb(signal.SIGCONT)
        stop_agent(a)


def _run(agent: AgentProc, command: str, cid: str = "", **conf: object) -> dict[str, object]:
    r = agent.exec_shim(agent.cni_env(command, cid), json.dumps(agent.netconf(**conf)).encode(), timeout=120)
    out = assert_cni_output(r.code, r.stdout) or {}
    assert_no_traceback(r.stderr.decode(errors="replace"), "shim stderr")
    return {"exit": r.code, "seconds": r.seconds, **out}


def _probe(agent: AgentProc, path: str) -> int:
    """The HTTP status of the agent's /healthz or /readyz (within 3 s: the probes answer within 2)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.extra['metricsPort']}{path}", timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def _wait_nothing_left(agent: AgentProc, limit: float = 30) -> None:
    """What failed ADDs may have left (a port OVSDB applied after the hang) goes without a DEL: wait for it."""
    deadline = time.monotonic() + limit
    while (left := agent.leftovers() + [p.name for p in (agent.root / "state").rglob("*") if p.is_file()]) != []:
        assert time.monotonic() < deadline, f"left behind by ADDs that answered an error: {left}"
        time.sleep(0.1)


def _wait_status_ready(agent: AgentProc, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while (out := _run(agent, "STATUS"))["exit"] != 0:
        assert out["code"] == 50, out
        assert time.monotonic() < deadline, f"STATUS still not ready: {out}"
        time.sleep(0.05)


def test_a_hung_ovsdb_is_try_again_not_internal_error(fault_agent: AgentProc, own_ovs: PrivateOvs, unique: str) -> None:
    _wait_status_ready(fault_agent)
    own_ovs.signal_ovsdb(signal.SIGSTOP)
    try:
        add = _run(fault_agent, "ADD", f"hang{unique}")
        assert add["exit"] == 1 and add["code"] == 11, add
        status = _run(fault_agent, "STATUS")
        assert status["exit"] == 1 and status["code"] == 50, status
    finally:
        own_ovs.signal_ovsdb(signal.SIGCONT)
    _wait_status_ready(fault_agent)
    _wait_nothing_left(fault_agent)  # the hung ADD's transaction landed when OVSDB resumed: removed, with no DEL
    ok = _run(fault_agent, "ADD", f"after{unique}")
    assert ok["exit"] == 0, ok
    for cid in (f"hang{unique}", f"after{unique}"):
        gone = _run(fault_agent, "DEL", cid)
        assert gone["exit"] == 0, gone
    assert fault_agent.leftovers() == []
    assert "Traceback" not in fault_agent.log_text()


def test_while_ovsdb_hangs_twenty_requests_at_once_each_answer_11_in_time_and_status_in_2s(
    fault_agent: AgentProc, own_ovs: PrivateOvs, unique: str
) -> None:
    _wait_status_ready(fault_agent)
    kept = _run(fault_agent, "ADD", f"kept{unique}")  # a live attachment for the DELs, CHECKs and GC to be about
    assert kept["exit"] == 0, kept
    prev = {"cniVersion": "1.1.0", "interfaces": kept["interfaces"], "ips": kept["ips"]}
    calls: list[tuple[str, str, dict[str, object]]] = [("ADD", f"h{i}{unique}", {}) for i in range(14)]
    calls += [("DEL", f"kept{unique}", {}), ("DEL", f"h0{unique}", {})]
    calls += [("CHECK", f"kept{unique}", {"prevResult": prev}) for _ in range(2)]
    calls += [("GC", "", {"cni.dev/valid-attachments": [{"containerID": f"kept{unique}", "ifname": "net1"}]})] * 2
    own_ovs.signal_ovsdb(signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(len(calls) + 1) as pool:
            futures = [pool.submit(_run, fault_agent, verb, cid, **conf) for verb, cid, conf in calls]
            statuses, probes = [], []
            while not all(f.done() for f in futures):
                statuses.append(_run(fault_agent, "STATUS"))
                probes.append((_probe(fault_agent, "/healthz"), _probe(fault_agent, "/readyz")))
            answers = [f.result() for f in futures]
    finally:
        own_ovs.signal_ovsdb(signal.SIGCONT)
    for (verb, _cid, _conf), out in zip(calls, answers, strict=True):
        assert out["exit"] == 1 and out["code"] == 11, (verb, out)
        assert float(str(out["seconds"])) < 10.0, (verb, out)
    assert statuses and all(s["exit"] == 1 and s["code"] == 50 for s in statuses), statuses
    assert max(float(str(s["seconds"])) for s in statuses) < 2.0, statuses
    assert set(probes) == {(200, 503)}, probes  # alive (a restart would not help), not ready
    _wait_status_ready(fault_agent, limit=10)
    _run(fault_agent, "DEL", f"kept{unique}")  # its DEL above may or may not have run before the deadline
    _wait_nothing_left(fault_agent)  # nothing of the fourteen ADDs that answered 11, with no DEL
    again = _run(fault_agent, "ADD", f"again{unique}")  # no restart: the same agent works again
    assert again["exit"] == 0, again
    assert _run(fault_agent, "DEL", f"again{unique}")["exit"] == 0
    assert fault_agent.leftovers() == []
    assert "Traceback" not in fault_agent.log_text()


@pytest.mark.parametrize("round_", range(3))
def test_after_an_ovsdb_restart_status_means_what_add_will_do(
    fault_agent: AgentProc, own_ovs: PrivateOvs, unique: str, round_: int
) -> None:
    _wait_status_ready(fault_agent)
    before = _run(fault_agent, "ADD", f"pre{round_}{unique}")
    assert before["exit"] == 0, before
    own_ovs.restart_ovsdb(signal.SIGKILL)
    _wait_status_ready(fault_agent)
    add = _run(fault_agent, "ADD", f"post{round_}{unique}")  # STATUS said ready: ADD must work now
    assert add["exit"] == 0, add
    for cid in (f"pre{round_}{unique}", f"post{round_}{unique}"):
        gone = _run(fault_agent, "DEL", cid)
        assert gone["exit"] == 0, gone
    assert fault_agent.leftovers() == []
    assert "Traceback" not in fault_agent.log_text()


def test_a_dead_vswitchd_is_not_ready_and_ready_again_within_2s_of_its_return(
    fault_agent: AgentProc, own_ovs: PrivateOvs, unique: str
) -> None:
    """OVSDB keeps dpdk_initialized=true after ovs-vswitchd dies: STATUS asks the switch itself."""
    _wait_status_ready(fault_agent)
    kept = _run(fault_agent, "ADD", f"live{unique}")
    assert kept["exit"] == 0, kept
    own_ovs.kill_vswitchd(signal.SIGKILL)
    try:
        killed = time.monotonic()
        status = _run(fault_agent, "STATUS")
        assert status["exit"] == 1 and status["code"] == 50, status
        assert time.monotonic() - killed < 2.0, status
        assert "ovs-vswitchd" in str(status["details"]), status
        add = _run(fault_agent, "ADD", f"dead{unique}")
        assert add["exit"] == 1 and add["code"] == 11, add
        prev = {"cniVersion": "1.1.0", "interfaces": kept["interfaces"], "ips": kept["ips"]}
        check = _run(fault_agent, "CHECK", f"live{unique}", prevResult=prev)
        assert check["exit"] == 1 and check["code"] == 11, check
        until = time.monotonic() + 2.0  # the probe reuses an answer for a second: not ready within two
        while _probe(fault_agent, "/readyz") != 503:
            assert time.monotonic() < until, "/readyz still 200 with ovs-vswitchd dead"
        assert _probe(fault_agent, "/healthz") == 200
    finally:
        own_ovs.start_vswitchd()
    back = time.monotonic()
    _wait_status_ready(fault_agent, limit=2.0)
    assert time.monotonic() - back < 2.0
    while _probe(fault_agent, "/readyz") != 200:
        assert time.monotonic() - back < 2.0, "/readyz not back within 2 s of ovs-vswitchd"
    for cid in (f"live{unique}", f"dead{unique}"):
        assert _run(fault_agent, "DEL", cid)["exit"] == 0
    again = _run(fault_agent, "ADD", f"back{unique}")
    assert again["exit"] == 0, again
    assert _run(fault_agent, "DEL", f"back{unique}")["exit"] == 0
    assert fault_agent.leftovers() == []
    assert "Traceback" not in fault_agent.log_text()


def test_a_missing_bridge_the_agent_may_not_make_is_not_ready(own_ovs: PrivateOvs) -> None:
    agent = make_agent(own_ovs, bridges={"allowed": ["br-absent"], "create": False})
    try:
        status = _run(agent, "STATUS", bridge="br-absent")
        assert status["exit"] == 1 and status["code"] == 50, status
        assert "br-absent" in str(status["details"]), status
    finally:
        stop_agent(agent)


def test_an_add_that_finishes_after_its_deadline_undoes_itself(own_ovs: PrivateOvs, unique: str) -> None:
    """An IPAM plugin slower than ADD's 8 s budget: the caller gets 11 at the deadline; the ADD, which then
    completes, finds its answer given and rolls back: no port, file, record, lease or child process is left."""
    agent = make_agent(own_ovs, ipamPlugins=["host-local", "slow-ipam"])
    try:
        slow = agent.cni_bin.parent / "slow-ipam"
        slow.write_text(f"#!/bin/sh\nsleep 9\nexec {agent.cni_bin.parent / 'host-local'}\n")
        slow.chmod(0o755)
        ipam = {"type": "slow-ipam", "subnet": "10.94.0.0/24", "dataDir": str(agent.root / "ipam")}
        late = _run(agent, "ADD", f"late{unique}", ipam=ipam)
        assert late["exit"] == 1 and late["code"] == 11, late
        assert 7.5 < float(str(late["seconds"])) < 10.0, late
        until = time.monotonic() + 30
        while "outlived its deadline" not in agent.log_text():  # the worker finishes ~1 s later and rolls back
            assert time.monotonic() < until, agent.log_text()[-2000:]
            time.sleep(0.1)
        leases = agent.root / "ipam" / "vhnet"
        until = time.monotonic() + 10
        while (left := agent.leftovers() + sorted(p.name for p in leases.glob("10.*"))) != []:
            assert time.monotonic() < until, left
            time.sleep(0.1)
        assert not any((agent.root / "state").iterdir())
        assert "Traceback" not in agent.log_text()
    finally:
        stop_agent(agent)
