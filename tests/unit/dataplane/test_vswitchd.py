"""ovs-vswitchd's liveness as the agent asks it: a real unix socket answering the unixctl `version` request is alive;
a socket nobody listens on (a killed switch leaves its file), a silent one (hung), or no pidfile each give a reason."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vhostplug.dataplane import vswitchd


@pytest.fixture
def rundir(short_dir: Path) -> Path:
    (short_dir / "ovs-vswitchd.pid").write_text("4242\n")
    return short_dir


def _serve(path: Path, answer: bool) -> Iterator[None]:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            request = json.loads(conn.recv(4096))
            if answer:
                conn.sendall(json.dumps({"id": request["id"], "result": "ovs-vswitchd 3.1.0\n", "error": None}).encode())
            else:
                conn.recv(1)  # hung: never answers (returns when the client gives up)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        srv.close()
        t.join(timeout=5)


def test_an_answering_switch_is_alive(rundir: Path) -> None:
    for _ in _serve(rundir / "ovs-vswitchd.4242.ctl", answer=True):
        assert vswitchd.problem(rundir, 1.0) is None


def test_a_dead_switchs_socket_refuses(rundir: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(rundir / "ovs-vswitchd.ctl"))  # bound, never listening: as a killed switch leaves it
    try:
        reason = vswitchd.problem(rundir, 1.0)
    finally:
        sock.close()
    assert reason is not None and "not serving" in reason and "ovs-vswitchd.ctl" in reason


def test_a_hung_switch_is_not_alive_within_the_timeout(rundir: Path) -> None:
    for _ in _serve(rundir / "ovs-vswitchd.4242.ctl", answer=False):
        reason = vswitchd.problem(rundir, 0.2)
        assert reason is not None and "does not answer" in reason


def test_no_pidfile_or_no_socket_is_not_running(short_dir: Path) -> None:
    assert "no " in str(vswitchd.problem(short_dir, 0.2))
    (short_dir / "ovs-vswitchd.pid").write_text("4242\n")
    assert "no control socket" in str(vswitchd.problem(short_dir, 0.2))
