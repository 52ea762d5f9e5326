"""Bad input and big input at the shim <-> agent boundary, through the real shim exec'd as a runtime does and the
real agent on the private OVS: the spec's error JSON with a precise code, no traceback anywhere, nothing left."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import require_root
from vhostplug.cni import wire
from vhostplug.cni.install import install_shim
from vhostplug_testsupport.cniagent import AgentProc
from vhostplug_testsupport.fuzz import assert_cni_output, assert_no_traceback


def _check(agent: AgentProc, run_code: int, stdout: bytes, stderr: bytes) -> dict[str, object]:
    out = assert_cni_output(run_code, stdout)
    assert_no_traceback(stderr.decode(errors="replace"), "shim stderr")
    assert_no_traceback(agent.log_text(), "agent log")
    return out or {}


def test_gc_of_a_busy_node_is_read_whole(agent: AgentProc, unique: str) -> None:
    """309 KB of valid attachments used to be cut at the first chunk (code 6, 'char 219189')."""
    keep = [{"containerID": f"{unique}{i:058d}", "ifname": f"net{i % 8}"} for i in range(3000)]
    conf = json.dumps(agent.netconf(**{"cni.dev/valid-attachments": keep})).encode()
    assert len(conf) > 300_000
    r = agent.exec_shim(agent.cni_env("GC"), conf)
    assert r.code == 0, r
    _check(agent, r.code, r.stdout, r.stderr)


def test_half_a_megabyte_add_succeeds_and_del_leaves_nothing(agent: AgentProc, unique: str) -> None:
    """515 KB through the shim used to end in code 11 'Connection reset by peer'."""
    conf = json.dumps(agent.netconf(args={"pad": "x" * 515_000})).encode()
    r = agent.exec_shim(agent.cni_env("ADD", f"big{unique}"), conf)
    out = _check(agent, r.code, r.stdout, r.stderr)
    assert r.code == 0, out
    assert agent.our_ports()
    d = agent.exec_shim(agent.cni_env("DEL", f"big{unique}"), conf)
    assert d.code == 0, d
    assert agent.leftovers() == []


def test_over_four_mib_is_refused_by_the_shim_and_by_the_agent(agent: AgentProc, unique: str) -> None:
    conf = json.dumps(agent.netconf(args={"pad": "x" * (wire.MAX_REQUEST + 10)})).encode()
    r = agent.exec_shim(agent.cni_env("ADD", f"huge{unique}"), conf)
    out = _check(agent, r.code, r.stdout, r.stderr)
    assert r.code == 1 and out["code"] == 7 and "4 MiB" in str(out["msg"]), out
    # a client that is not our shim: the agent reads up to its limit and answers the same code
    request = wire.encode_request({b"CNI_COMMAND": b"ADD"}, conf)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(str(agent.socket))
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent answered and closed as soon as the limit was passed
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    answer = wire.decode_reply(reply)
    assert answer is not None, reply
    code, _, body = answer
    assert code == 1 and json.loads(body)["code"] == 7, body
    assert agent.leftovers() == []


def test_deep_nesting_is_a_decode_error_in_the_shim_and_in_the_agent(agent: AgentProc, unique: str) -> None:
    env = agent.cni_env("ADD", f"deep{unique}")
    # not an object the shim's scanner is sure about: the shim decodes it itself (used to be a RecursionError)
    r = agent.exec_shim(env, b"[" * 100_000)
    out = _check(agent, r.code, r.stdout, r.stderr)
    assert r.code == 1 and out["code"] == 6, out
    # a well-formed object whose top level the scanner reads: nesting reaches the agent (used to be code 5)
    head = json.dumps(agent.netconf())[:-1]
    for depth in (wire.MAX_DEPTH + 1, 5000):
        body = f'{head}, "args": {{"a": {"[" * depth}{"]" * depth}}}}}'.encode()
        r = agent.exec_shim(env, body)
        out = _check(agent, r.code, r.stdout, r.stderr)
        assert r.code == 1 and out["code"] == 6 and "nested" in str(out["msg"]), out
    assert agent.leftovers() == []


def test_non_utf8_ifname_is_an_environment_error(agent: AgentProc, unique: str) -> None:
    env = {k.encode(): v.encode() for k, v in agent.cni_env("ADD", f"u8{unique}").items()}
    env[b"CNI_IFNAME"] = b"net\xff"
    r = agent.exec_shim(env, json.dumps(agent.netconf()).encode())
    out = _check(agent, r.code, r.stdout, r.stderr)
    assert r.code == 1 and out["code"] == 4 and "CNI_IFNAME" in str(out["msg"]), out
    assert agent.leftovers() == []


def test_empty_stdin_is_a_decode_error_at_once(agent: AgentProc, unique: str) -> None:
    """It used to be read as {} and wait 30 s for the default agent socket, then answer code 11. DEL is the exception:
    it goes on to the node's agent, which works from its records (here: none, so it succeeds having touched nothing)."""
    for command in ("ADD", "CHECK", "STATUS", "GC"):
        r = agent.exec_shim(agent.cni_env(command, f"e{unique}"), b"")
        out = _check(agent, r.code, r.stdout, r.stderr)
        assert r.code == 1 and out["code"] == 6 and "no network configuration" in str(out["msg"]), (command, out)
    env = {**agent.cni_env("DEL", f"e{unique}"), "VHOSTPLUG_AGENT_SOCKET": str(agent.socket)}
    r = agent.exec_shim(env, b"")
    assert r.code == 0 and r.stdout == b"", (r.stdout, r.stderr)
    assert agent.leftovers() == []


def test_long_container_ids_work_or_are_refused_naming_the_limit(agent: AgentProc, unique: str) -> None:
    """ADD used to fail with code 5 'File name too long' from a temporary file name from ~239 characters on."""
    conf = json.dumps(agent.netconf()).encode()
    cid = (unique * 40)[:250]  # '<cid>-net1' is 255 bytes: the longest file name there is
    r = agent.exec_shim(agent.cni_env("ADD", cid), conf)
    out = _check(agent, r.code, r.stdout, r.stderr)
    assert r.code == 0, out
    d = agent.exec_shim(agent.cni_env("DEL", cid), conf)
    assert d.code == 0, d
    assert agent.leftovers() == []
    cid = (unique * 40)[:256]  # allowed as an ID, but '<cid>-net1' cannot be a file name
    r = agent.exec_shim(agent.cni_env("ADD", cid), conf)
    out = _check(agent, r.code, r.stdout, r.stderr)
    assert r.code == 1 and out["code"] == 4 and "261 bytes" in str(out["msg"]), out
    assert agent.leftovers() == []


def test_symlinked_parent_of_the_device_info_file_is_the_unsafe_path_code(
    agent: AgentProc, unique: str, short_dir: Path
) -> None:
    real = short_dir / "real"
    real.mkdir()
    link = short_dir / "link"
    link.symlink_to(real)
    conf = agent.netconf(runtimeConfig={"CNIDeviceInfoFile": str(link / "dev.json")})
    r = agent.exec_shim(agent.cni_env("ADD", f"ln{unique}"), json.dumps(conf).encode())
    out = _check(agent, r.code, r.stdout, r.stderr)
    assert r.code == 1 and out["code"] in (7, 101), out  # refused by node policy (7) or as an unsafe path (101)
    assert out["code"] != 5
    assert list(real.iterdir()) == []
    assert agent.leftovers() == []


def test_a_refused_connection_is_not_try_again_later(agent: AgentProc) -> None:
    """A local non-root user is refused at the agent's socket: a permanent error naming the socket and the uid."""
    require_root()
    exe_dir = Path(tempfile.mkdtemp(prefix="vhp-nobody-", dir="/tmp"))
    try:
        os.chmod(exe_dir, 0o755)
        exe = install_shim(exe_dir)
        os.chmod(exe, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.chmod(agent.root, 0o755)  # the socket itself stays 0600 root
        conf = json.dumps(agent.netconf()).encode()
        proc = subprocess.run(
            [str(exe)], input=conf, env=agent.cni_env("STATUS"), capture_output=True, timeout=60, user=65534
        )
        out = _check(agent, proc.returncode, proc.stdout, proc.stderr)
        assert proc.returncode == 1 and out["code"] != 11, out
        text = f"{out['msg']} {out.get('details', '')}"
        assert str(agent.socket) in text and "uid 65534" in text and "ermission denied" in text, out
    finally:
        shutil.rmtree(exe_dir, ignore_errors=True)
