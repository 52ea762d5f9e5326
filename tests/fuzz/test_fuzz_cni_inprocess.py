"""Fuzz, in process: the wire decoder, the netconf parser and CniHandler over the noop dataplane in a temporary
folder. Every answer is the spec's (exit 0/1, a result or error JSON), no internal error, no exception escapes, no
logged traceback, and nothing is left behind: a failed ADD made nothing; a successful one is undone by DEL.

Sizes (CI, scale 1): 3,000 wire requests + 2,500 netconfs + 2,200 handler calls (2,000 random, 200 valid). ``VHOSTPLUG_FUZZ_SCALE`` scales them.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from vhostplug.cni import netconf, wire
from vhostplug.cni.handler import CniHandler
from vhostplug.cni.policy import NodePolicy
from vhostplug.cni.spec import CniError
from vhostplug.cni.verbs import HandlerOptions
from vhostplug_testsupport.cnigen import CniGen
from vhostplug_testsupport.fuzz import assert_cni_output, cases
from vhostplug_testsupport.noopdataplane import NoopDataplane

VALID_REQUEST = wire.encode_request(
    {b"CNI_COMMAND": b"ADD", b"CNI_CONTAINERID": b"abc", b"CNI_IFNAME": b"net1", b"CNI_NETNS": b"/x"},
    b'{"cniVersion": "1.1.0", "name": "n", "type": "vhostplug", "ipam": {"routes": [{"dst": "0.0.0.0/0"}]}}',
)


def _files(root: Path) -> list[str]:
    """Everything under ``root``, folders included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_wire_decoder(fuzz_rng: random.Random, tmp_path: Path) -> None:
    gen = CniGen(fuzz_rng, tmp_path, tmp_path)
    seen = {"ok": 0, "refused": 0}
    for i in range(cases(3000)):
        if i % 3 == 0:
            data = gen.mutate(VALID_REQUEST)
        elif i % 3 == 1:
            c = gen.case()
            data = wire.encode_request(
                {k.encode(): v.encode("utf-8", "surrogatepass") for k, v in c.env.items()}, c.stdin()
            )
        else:
            data = wire.encode_request({b"CNI_COMMAND": b"ADD"}, gen.mutate(gen.case().stdin()))
        try:
            env, conf = wire.decode_request(data)
        except wire.WireError as err:
            assert err.code in (4, 6, 7) and err.msg, (data[:200], err.msg)
            seen["refused"] += 1
        else:
            assert isinstance(conf, dict) and all(isinstance(v, str) for v in env.values())
            assert wire.depth(conf) <= wire.MAX_DEPTH
            json.dumps(conf)  # whatever was decoded can be encoded again (no recursion trouble downstream)
            seen["ok"] += 1
    assert seen["ok"] and seen["refused"], seen


def test_netconf_parser(fuzz_rng: random.Random, tmp_path: Path) -> None:
    gen = CniGen(fuzz_rng, tmp_path, tmp_path)
    seen = {"ok": 0, "refused": 0}
    for _ in range(cases(2500)):
        raw = gen.conf()
        try:
            conf = netconf.parse(raw)
        except CniError as err:
            assert isinstance(err.code, int) and err.msg
            seen["refused"] += 1
        else:
            assert conf.type == "vhostplug"
            seen["ok"] += 1
    assert seen["ok"] and seen["refused"], seen


@pytest.mark.root
def test_handler_over_noop_dataplane(fuzz_rng: random.Random, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, bin_dir, state, devinfo = tmp_path / "s", tmp_path / "bin", tmp_path / "state", tmp_path / "devinfo"
    bin_dir.mkdir()
    devinfo.mkdir()
    gen = CniGen(fuzz_rng, root, bin_dir, devinfo_dir=devinfo)
    roots = gen.make_roots()
    dataplane = NoopDataplane()
    policy = NodePolicy(socket_roots=(root,), bridges=("br-fuzz",), devinfo_root=tmp_path / "devinfo")
    handler = CniHandler(dataplane, HandlerOptions(client_socket_wait=0.0, state_dir=state, policy=policy))
    caplog.set_level(logging.WARNING)
    codes: dict[str, int] = {}
    added = 0
    for _ in range(cases(2000)):
        case = gen.case()
        code, out = handler.handle(case.env, case.conf)
        answer = assert_cni_output(code, out)
        where = f"{case.env} {case.conf!r:.600}"
        if code == 1:
            assert answer is not None and "internal error" not in answer["msg"], (answer, where)
            codes[str(answer["code"])] = codes.get(str(answer["code"]), 0) + 1
        else:
            codes["0"] = codes.get("0", 0) + 1
        if case.env.get("CNI_COMMAND") == "ADD" and code == 0:
            added += 1
            assert dataplane.list_ports(), where
            code, out = handler.handle({**case.env, "CNI_COMMAND": "DEL"}, case.conf)
            assert code == 0, (out, where)
        assert dataplane.list_ports() == [], where
        assert [f for f in _files(root) if f not in roots] == [], (_files(root), where)
        assert _files(state) == [] if state.exists() else True, (_files(state), where)
        assert _files(devinfo) == [], (_files(devinfo), where)
    # a few hundred straight ADD/CHECK/DEL sequences of valid input between the random ones
    for i in range(cases(200)):
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"seq{i:04d}",
            "CNI_IFNAME": "net1",
            "CNI_NETNS": "/var/run/netns/fuzz",
            "CNI_PATH": str(bin_dir),
        }
        conf = gen.base_conf()
        code, out = handler.handle(env, conf)
        result = assert_cni_output(code, out)
        assert code == 0 and result is not None, out
        code, out = handler.handle({**env, "CNI_COMMAND": "CHECK"}, {**conf, "prevResult": result})
        if conf["cniVersion"] in ("0.3.1", "0.2.0"):  # CHECK came with CNI 0.4.0: code 1 before it
            assert code == 1 and json.loads(out)["code"] == 1, out
        else:
            assert code == 0, out
        code, out = handler.handle({**env, "CNI_COMMAND": "DEL"}, conf)
        assert code == 0, out
        added += 1
    assert dataplane.list_ports() == [] and [f for f in _files(root) if f not in roots] == []
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks[0].getMessage()
    # every class of answer the generator aims at came up: success, a bad environment (4), a refused config (7)
    assert added >= cases(200) and {"0", "4", "7"} <= codes.keys(), codes
