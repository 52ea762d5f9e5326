"""Fuzz through the real processes: generated netconfs and environments exec'd through the installed shim (as a
runtime does) to a real agent on the private OVS, and mutated wire requests straight to the agent's socket.

Each answer: exit 0/1, stdout a CNI result or error JSON, no traceback on the shim's stderr or in the agent's log, no
hang (a bounded wait per call), and nothing left: a successful ADD is undone by DEL, a failed one made nothing.
Sizes (CI, scale 1): 150 shim execs + 250 raw requests, each suite stopping early (after a minimum of 60 and 100)
when its time budget (50 s, 30 s) is spent on a slow host.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator

import pytest

from vhostplug.cni import wire
from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent
from vhostplug_testsupport.cnigen import SUB_ROOTS, CniGen
from vhostplug_testsupport.fuzz import assert_cni_output, assert_no_traceback, cases, time_budget

BRIDGE = "br-fuzz"


@pytest.fixture
def fuzz_agent(private_ovs: PrivateOvs) -> Iterator[AgentProc]:
    a = make_agent(private_ovs, bridges={"allowed": [BRIDGE]})  # node policy: the fuzz network's bridge
    try:
        yield a
    finally:
        stop_agent(a, bridges=(BRIDGE,))


def _gen(agent: AgentProc, rng: random.Random) -> CniGen:
    empty_bin = agent.root / "nobin"  # no IPAM plugin: an ipam section fails cleanly instead of leasing
    empty_bin.mkdir(exist_ok=True)
    devinfo = agent.root / "devinfo"  # exists, as Multus's device-info folder does
    devinfo.mkdir(exist_ok=True)
    gen = CniGen(rng, agent.socket_root, empty_bin, agent_socket=str(agent.socket), devinfo_dir=devinfo)
    gen.make_roots()
    return gen


def _left(agent: AgentProc) -> list[str]:
    made = {str(agent.socket_root / sub) for sub in SUB_ROOTS}
    return [p for p in agent.leftovers() if p not in made] + [str(p) for p in (agent.root / "devinfo").iterdir()]


def test_shim_and_agent(fuzz_agent: AgentProc, fuzz_rng: random.Random) -> None:
    gen = _gen(fuzz_agent, fuzz_rng)
    codes: dict[int, int] = {}
    deadline = time_budget(50)
    for i in range(cases(150)):
        if i >= 60 and time.monotonic() > deadline:
            break
        case = gen.case()
        env = {**case.env, "PATH": "/usr/bin:/bin"}
        stdin = case.stdin() if gen.rng.random() < 0.9 else gen.mutate(case.stdin())
        r = fuzz_agent.exec_shim(env, stdin, timeout=60)
        where = f"env={case.env} stdin={stdin[:400]!r}"
        out = assert_cni_output(r.code, r.stdout, f"shim stdout ({where})")
        assert_no_traceback(r.stderr.decode(errors="replace"), f"shim stderr ({where})")
        code = 0 if r.code == 0 else int((out or {}).get("code", -1))
        codes[code] = codes.get(code, 0) + 1
        assert code != 5, (out, where)  # 'internal error' is an agent bug
        if case.env.get("CNI_COMMAND") == "ADD" and r.code == 0:
            d = fuzz_agent.exec_shim({**env, "CNI_COMMAND": "DEL"}, stdin, timeout=60)
            assert d.code == 0, (d, where)
        assert _left(fuzz_agent) == [], where
    assert_no_traceback(fuzz_agent.log_text(), "agent log")
    assert len(codes) > 3, codes


def test_raw_requests_to_the_agent(fuzz_agent: AgentProc, fuzz_rng: random.Random) -> None:
    gen = _gen(fuzz_agent, fuzz_rng)
    deadline = time_budget(30)
    for i in range(cases(250)):
        if i >= 100 and time.monotonic() > deadline:
            break
        case = gen.case()
        env = {k.encode(): v.encode() for k, v in case.env.items()}
        data = gen.mutate(wire.encode_request(env, case.stdin()))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(str(fuzz_agent.socket))
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        answer = wire.decode_reply(reply)
        assert answer is not None, (reply[:300], data[:300])
        code, _, body = answer
        out = assert_cni_output(code, body, f"agent reply to {data[:300]!r}")
        assert code == 0 or (out or {}).get("code") != 5, (out, data[:300])
        decoded_env, conf = wire.decode_request(data) if code == 0 and out is not None else ({}, {})
        if decoded_env.get("CNI_COMMAND") == "ADD":  # a mutation that still was a valid ADD (any CNI version)
            d = fuzz_agent.exec_shim(
                {**decoded_env, "CNI_COMMAND": "DEL", "PATH": "/usr/bin:/bin"},
                json.dumps({**conf, "agentSocket": str(fuzz_agent.socket)}).encode(),
            )
            assert d.code == 0, d
        assert _left(fuzz_agent) == [], data[:300]
    assert_no_traceback(fuzz_agent.log_text(), "agent log")
