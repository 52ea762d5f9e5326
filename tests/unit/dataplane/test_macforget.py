"""The agent's MAC forgetter against a stand-in ovs-vswitchd control socket (a real unix socket speaking the unixctl
JSON-RPC ``ovs-appctl`` speaks): each link change becomes ``fdb/add`` + ``fdb/del`` in one write, in the port's VLAN;
after a link went down the bridge is asked once more ``recheck`` later and the MAC forgotten again only if it knows it;
a link that came up is not looked at again; a switch that does not answer is said once and does not stop the thread.
(Against a real OVS and a real vhost-user peer: tests/functional/dataplane/test_macforget.py.)"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vhostplug.dataplane.macforget import LinkChange, MacForgetter

MAC = "02:5e:00:00:0f:02"


class FakeSwitch:
    """Answers every request; ``fdb/show`` lists :attr:`known` MACs. Keeps each write's methods and params."""

    def __init__(self, rundir: Path) -> None:
        (rundir / "ovs-vswitchd.pid").write_text("4242\n")
        self.writes: list[list[list[str]]] = []
        self.known: set[str] = set()
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(rundir / "ovs-vswitchd.4242.ctl"))
        self.srv.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        decoder = json.JSONDecoder()
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                buf = conn.recv(65536).decode()
                requests = []
                while buf.strip():
                    req, end = decoder.raw_decode(buf.lstrip())
                    buf = buf.lstrip()[end:]
                    requests.append(req)
                self.writes.append([[r["method"], *r["params"]] for r in requests])
                answers = []
                for r in requests:
                    result = ""
                    if r["method"] == "fdb/show":
                        result = " port  VLAN  MAC                Age\n" + "".join(
                            f"    1     0  {m}    1\n" for m in self.known
                        )
                    answers.append(json.dumps({"id": r["id"], "result": result, "error": None}))
                conn.sendall("".join(answers).encode())

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def switch(short_dir: Path) -> Iterator[FakeSwitch]:
    sw = FakeSwitch(short_dir)
    yield sw
    sw.close()


def _wait(what: str, ok: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.005)


def test_link_down_forgets_in_one_write_and_again_if_learned_again(switch: FakeSwitch, short_dir: Path) -> None:
    forgetter = MacForgetter(short_dir, recheck=0.05)
    forgetter.start()
    try:
        switch.known.add(MAC)  # learned again behind the dead port by the time of the recheck
        down = LinkChange("vhu0", "br0", MAC, 7, "down")
        forgetter.seen(down)
        # the switch keeps a write before the forgetter has read its answer: wait for both
        _wait(
            "the forgetting, the recheck and the second forgetting, answered",
            lambda: len(switch.writes) >= 3 and len(forgetter.done) >= 2,
        )
        assert switch.writes[0] == [["fdb/add", "br0", "vhu0", "7", MAC], ["fdb/del", "br0", "7", MAC]]
        assert switch.writes[1] == [["fdb/show", "br0"]]
        assert switch.writes[2] == switch.writes[0]
        assert forgetter.done == [(down, None), (down, None)]
        time.sleep(0.15)
        assert len(switch.writes) == 3  # one recheck per link change, not a loop
    finally:
        forgetter.stop()


def test_no_second_forgetting_when_the_mac_stayed_forgotten_nor_after_a_link_up(
    switch: FakeSwitch, short_dir: Path
) -> None:
    forgetter = MacForgetter(short_dir, recheck=0.02)
    forgetter.start()
    try:
        forgetter.seen(LinkChange("vhu0", "br0", MAC, 0, "down"))
        _wait("the forgetting and the recheck", lambda: len(switch.writes) >= 2)
        forgetter.seen(LinkChange("vhu1", "br0", MAC, 0, "up"))
        _wait("the forgetting on link up", lambda: len(switch.writes) >= 3)
        time.sleep(0.1)
        assert [w[0][0] for w in switch.writes] == ["fdb/add", "fdb/show", "fdb/add"]
    finally:
        forgetter.stop()


def test_a_switch_that_is_gone_is_said_and_the_thread_goes_on(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    forgetter = MacForgetter(short_dir, timeout=0.2)  # no pidfile, no control socket
    forgetter.start()
    try:
        for port in ("vhu0", "vhu1"):
            forgetter.seen(LinkChange(port, "br0", MAC, 0, "up"))
        _wait("both changes answered", lambda: len(forgetter.done) == 2)
        assert all(why is not None and "not running" in why for _c, why in forgetter.done)
        warned = [r for r in caplog.records if "not forgotten" in r.getMessage()]
        assert len(warned) == 1  # said once per outage
    finally:
        forgetter.stop()
    assert forgetter._thread is None
