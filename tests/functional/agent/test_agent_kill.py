"""What held when probed and must keep holding: the agent SIGKILLed at random points of 8 concurrent ADDs, or OVSDB
killed under them, and afterwards DEL of every attachment plus a GC leave no port, folder, socket or record.

Every ADD answers in the spec's format whatever happens (0, or 1 with code 11 "try again"); the kill points come
from the fuzz seed (VHOSTPLUG_FUZZ_SEED), printed with any failure.
"""

from __future__ import annotations

import json
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport import fuzz
from vhostplug_testsupport.cniagent import AgentProc, ShimRun
from vhostplug_testsupport.fuzz import assert_cni_output, assert_no_traceback

WORKERS = 8
RECORDS = Path("/var/lib/vhostplug/attachments")


def _records_of(tag: str) -> list[str]:
    if not RECORDS.exists():
        return []
    return sorted(p.name for p in RECORDS.glob("*.json") if tag in p.read_text(errors="replace"))


def _add_all(agent: AgentProc, cids: list[str]) -> list[ShimRun]:
    conf = json.dumps(agent.netconf()).encode()
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda c: agent.exec_shim(agent.cni_env("ADD", c), conf, timeout=120), cids))


def _clean_up_and_check(agent: AgentProc, cids: list[str], tag: str) -> None:
    conf = agent.netconf()
    for cid in cids:
        r = agent.exec_shim(agent.cni_env("DEL", cid), json.dumps(conf).encode(), timeout=120)
        assert r.code == 0, (cid, r)
    gc = agent.exec_shim(agent.cni_env("GC"), json.dumps({**conf, "cni.dev/valid-attachments": []}).encode())
    assert gc.code == 0, gc
    assert agent.leftovers() == [], agent.leftovers()
    assert _records_of(tag) == []


def _check_answers(runs: list[ShimRun]) -> dict[int, int]:
    seen: dict[int, int] = {}
    for r in runs:
        out = assert_cni_output(r.code, r.stdout) or {}
        assert_no_traceback(r.stderr.decode(errors="replace"), "shim stderr")
        code = 0 if r.code == 0 else int(out["code"])
        assert code in (0, 11), out  # done, or "try again later": never a half-made success or an internal error
        seen[code] = seen.get(code, 0) + 1
    return seen


@pytest.mark.parametrize("round_", range(4))
def test_agent_sigkill_during_concurrent_adds(agent: AgentProc, unique: str, round_: int) -> None:
    rng = random.Random(fuzz.seed_for(f"agent-kill-{round_}"))
    tag = f"k{round_}{unique}"
    cids = [f"c{i}{tag}" for i in range(WORKERS)]  # distinct in their first 12 characters (see issue 12.5)
    delay = rng.uniform(0.0, 0.6)
    with ThreadPoolExecutor(1) as one:
        adds = one.submit(_add_all, agent, cids)
        time.sleep(delay)
        agent.stop(signal.SIGKILL)
        agent.start()  # the DaemonSet restarts it; waiting shims reach the new agent
        runs = adds.result(timeout=300)
    seen = _check_answers(runs)
    _clean_up_and_check(agent, cids, tag)
    assert sum(seen.values()) == WORKERS, (delay, seen)


@pytest.mark.parametrize("round_", range(2))
def test_ovsdb_killed_during_concurrent_adds(agent: AgentProc, unique: str, round_: int) -> None:
    ovs: PrivateOvs = agent.ovs
    rng = random.Random(fuzz.seed_for(f"ovsdb-kill-{round_}"))
    tag = f"o{round_}{unique}"
    cids = [f"c{i}{tag}" for i in range(WORKERS)]
    with ThreadPoolExecutor(1) as one:
        adds = one.submit(_add_all, agent, cids)
        time.sleep(rng.uniform(0.0, 0.6))
        ovs.restart_ovsdb(signal.SIGKILL)
        runs = adds.result(timeout=300)
    _check_answers(runs)
    deadline = time.monotonic() + 60
    while agent.exec_shim(agent.cni_env("STATUS"), json.dumps(agent.netconf()).encode()).code != 0:
        assert time.monotonic() < deadline, "STATUS never ready again after the OVSDB restart"
        time.sleep(0.1)
    _clean_up_and_check(agent, cids, tag)
    assert_no_traceback(agent.log_text(), "agent log")
