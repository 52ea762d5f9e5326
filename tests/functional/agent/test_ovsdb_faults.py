"""An OVSDB that hangs or restarts, seen through the real shim and agent on a private OVS of this module's own:
ADD answers 11 ("try again"), STATUS 50, never code 5; once OVSDB is back, STATUS says ready only when ADD works;
what an ADD left half-made while OVSDB hung is gone after DEL."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent
from vhostplug_testsupport.fuzz import assert_cni_output, assert_no_traceback


@pytest.fixture(scope="module")
def own_ovs() -> Iterator[PrivateOvs]:
    require_root()
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-ovsf-", dir="/tmp"))
    ovs = PrivateOvs(run_dir)
    ovs.start()
    try:
        yield ovs
    finally:
        ovs.signal_ovsdb(signal.SIGCONT)
        ovs.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def fault_agent(own_ovs: PrivateOvs) -> Iterator[AgentProc]:
    a = make_agent(own_ovs)
    try:
        yield a
    finally:
        own_ovs.signal_ovsdb(signal.SIGCONT)
        stop_agent(a)


def _run(agent: AgentProc, command: str, cid: str = "") -> dict[str, object]:
    r = agent.exec_shim(agent.cni_env(command, cid), json.dumps(agent.netconf()).encode(), timeout=120)
    out = assert_cni_output(r.code, r.stdout) or {}
    assert_no_traceback(r.stderr.decode(errors="replace"), "shim stderr")
    return {"exit": r.code, **out}


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
    ok = _run(fault_agent, "ADD", f"after{unique}")
    assert ok["exit"] == 0, ok
    for cid in (f"hang{unique}", f"after{unique}"):  # the hung ADD's transaction may have landed late: DEL finds it
        gone = _run(fault_agent, "DEL", cid)
        assert gone["exit"] == 0, gone
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
