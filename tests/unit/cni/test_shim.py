"""The shim is standard library only and runs under `python3 -I -S`: checked by its imports and by really exec'ing
the installed file with VERSION and with no agent; its JSON-free scanner agrees with `json` or gives up; the agent
parses what the shim sends."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vhostplug.cni import shim, wire
from vhostplug.cni.install import install_shim, shim_source

STDLIB_OK = {"__future__", "json", "os", "posix", "socket", "_socket", "sys", "time", "errno", "select", "struct", "typing"}


def test_shim_imports_only_the_standard_library() -> None:
    tree = ast.parse(shim_source())  # as installed: shim.py with vhostplug.cni.wire inlined
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= STDLIB_OK, names - STDLIB_OK
    assert names <= set(sys.stdlib_module_names) | {"__future__"}


def test_wire_module_imports_only_what_the_shim_may_and_json_only_lazily() -> None:
    tree = ast.parse(Path(wire.__file__).read_text())
    top = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
    }
    assert top <= {"__future__", "typing"}, top  # typing only under TYPE_CHECKING (never at run time)
    installed = shim_source()
    assert "vhostplug" not in {
        (n.module or "").split(".")[0] for n in ast.walk(ast.parse(installed)) if isinstance(n, ast.ImportFrom)
    }
    # the shim's side of the wire, not the agent's decoders (the installed file is compiled on every exec)
    assert "def encode_request" in installed and "def decode_reply" in installed and "def too_large" in installed
    assert "def decode_request" not in installed and "def decode_netconf" not in installed


def test_installed_shim_runs_isolated(short_dir: Path) -> None:
    exe = install_shim(short_dir)
    first = exe.read_text().splitlines()[0]
    assert first.startswith("#!/") and first.endswith(" -IS")
    assert exe.stat().st_mode & 0o111
    env = {"CNI_COMMAND": "VERSION"}
    out = subprocess.run([str(exe)], input=b'{"cniVersion": "0.4.0"}', env=env, capture_output=True, check=True)
    assert json.loads(out.stdout) == {"cniVersion": "0.4.0", "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    # VERSION with a config we do not support still answers with the latest
    out = subprocess.run([str(exe)], input=b"{}", env=env, capture_output=True, check=True)
    assert json.loads(out.stdout)["cniVersion"] == "1.1.0"


def test_unknown_command_and_missing_agent(short_dir: Path) -> None:
    exe = install_shim(short_dir)
    bad = subprocess.run([str(exe)], input=b"{}", env={"CNI_COMMAND": "FROB"}, capture_output=True)
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 4
    conf = json.dumps({"cniVersion": "1.0.0", "agentSocket": str(short_dir / "none.sock")}).encode()
    gone = subprocess.run([str(exe)], input=conf, env={"CNI_COMMAND": "STATUS"}, capture_output=True, timeout=30)
    err = json.loads(gone.stdout)
    assert gone.returncode == 1 and err["code"] == 11 and err["cniVersion"] == "1.0.0"
    assert "not reachable" in err["msg"]


# -- the JSON-free fast path -------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
)
keys = st.sampled_from(["agentSocket", "cniVersion", "name", "ipam", 'a"b', "x\\y", "é"]) | st.text(max_size=6)


@given(st.dictionaries(keys, json_values | st.text(max_size=12), max_size=6), st.sampled_from([None, 2]))
def test_top_level_strings_agrees_with_json_or_gives_up(doc: dict[str, object], indent: int | None) -> None:
    text = json.dumps(doc, indent=indent, ensure_ascii=False)
    wanted = ("agentSocket", "cniVersion")
    got = shim.top_level_strings(text, wanted)
    expected = {k: v for k, v in json.loads(text).items() if k in wanted}
    if got is None:  # allowed only when a wanted value is not a plain string or a top-level key has an escape
        plain = all(isinstance(v, str) and json.dumps(v, ensure_ascii=False)[1:-1] == v for v in expected.values())
        assert not plain or any(json.dumps(k, ensure_ascii=False)[1:-1] != k for k in doc)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"agentSocket": "/run/a.sock", "cniVersion": "1.0.0"}',
            {"agentSocket": "/run/a.sock", "cniVersion": "1.0.0"},
        ),
        ('{"ipam": {"agentSocket": "/nested"}, "args": ["agentSocket", "/x"]}', {}),  # only top-level keys count
        ('{"name": "agentSocket", "agentSocket": "/a"}', {"agentSocket": "/a"}),  # a value that looks like the key
        ('{"agentSocket": "/a", "agentSocket": "/b"}', {"agentSocket": "/b"}),  # last wins, as in json.loads
        ('{"k": "say \\"agentSocket\\": \\"/evil\\"", "agentSocket": "/ok"}', {"agentSocket": "/ok"}),
        ('{"agentSocket": "/a\\u0000b"}', None),  # an escape: left to json
        ('{"agentSocket": 5}', None),  # not a string: left to json (which makes the error)
        ('{"agent\\u0053ocket": "/evil"}', None),  # json.loads reads that key as agentSocket
        ('{"agentSocket": "/a"', None),  # unbalanced
        ('{"agentSocket": "/a"} trailing', None),
        ('["agentSocket", "/a"]', None),
        ("", None),
    ],
)
def test_top_level_strings_cases(text: str, expected: dict[str, str] | None) -> None:
    assert shim.top_level_strings(text, ("agentSocket", "cniVersion")) == expected


def test_request_round_trip_through_the_agent_decoder() -> None:
    env = {b"CNI_COMMAND": b"ADD", b"CNI_ARGS": b"", b"CNI_IFNAME": b"net1", b"PATH": b"/bin"}
    got_env, conf = wire.decode_request(wire.encode_request(env, b'{"a": "\xc3\xa9"}'))
    assert got_env == {"CNI_COMMAND": "ADD", "CNI_ARGS": "", "CNI_IFNAME": "net1"}
    assert conf == {"a": "é"}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b'{"env": {}, "config": "{}"}',
        b"VHP2 99\nCNI_COMMAND=ADD",
        b"VHP2 x\n",
        b"VHP2 5\nNOEQ\0{}",
        b"VHP2 0\n\xff",
        b"VHP2 0\n",  # no netconf at all
        b"VHP2 0\n  \n",
        b"VHP2 0\n[1]",
        b"VHP2 0\n" + b"[" * 100_000,  # json.loads would raise RecursionError
        b"VHP2 0\n" + b'{"a":' * 65 + b"1" + b"}" * 65,  # valid JSON, deeper than the limit
    ],
)
def test_malformed_requests_are_decode_failures(request_bytes: bytes) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_request(request_bytes)
    assert err.value.code == 6


def test_request_limits_and_env_encoding() -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_request(b"VHP2 0\n" + b" " * wire.MAX_REQUEST)
    assert err.value.code == 7 and "4 MiB" in err.value.msg
    with pytest.raises(wire.WireError) as err:
        wire.decode_request(wire.encode_request({b"CNI_IFNAME": b"n\xffx"}, b"{}"))
    assert err.value.code == 4 and "CNI_IFNAME" in err.value.msg
    deep_ok = b'{"a":' * 63 + b"1" + b"}" * 63
    assert wire.depth(wire.decode_request(b"VHP2 0\n" + deep_ok)[1]) == 63
