"""ovs-vswitchd's MAC table through its control socket (the unixctl JSON-RPC ``ovs-appctl`` speaks), on the session's
private OVS: :func:`vswitchd.forget_mac` removes a MAC the bridge holds and is harmless for one it does not; a
bridge that does not exist is a clear error; several requests in one write come back in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from vhostplug.dataplane import ovsdb_rpc, vswitchd
from vhostplug.lab import ovsdb
from vhostplug.lab.ovs import PrivateOvs

MAC = "02:5e:00:00:00:01"


def _fdb(rundir: Path, bridge: str) -> str:
    return vswitchd.fdb_show(rundir, bridge, timeout=5)


@pytest.fixture
def bridge(private_ovs: PrivateOvs, short_dir: Path, unique: str) -> Iterator[tuple[str, str]]:
    """A netdev bridge with one vhost-user client port (nobody serves its socket), once ovs-vswitchd has it."""
    require_root()
    name, port = f"brf{unique}", f"vhf{unique}"
    ovsdb.add_vhost_client_ports(private_ovs.endpoint, name, {port: str(short_dir / "vhu.sock")})
    try:
        deadline = time.monotonic() + 10
        while not any(
            isinstance(r.get("ofport"), int) and r["ofport"] > 0
            for r in ovsdb_rpc.select(private_ovs.endpoint, "Interface", [["name", "==", port]], ["ofport"])
        ):
            assert time.monotonic() < deadline, f"ovs-vswitchd did not add {port} within 10 s"
            time.sleep(0.05)
        yield name, port
    finally:
        ovsdb.del_bridge(private_ovs.endpoint, name)


def test_forget_mac_removes_what_the_bridge_holds(private_ovs: PrivateOvs, bridge: tuple[str, str]) -> None:
    name, port = bridge
    rundir = private_ovs.run_dir
    (added,) = vswitchd.call(rundir, [["fdb/add", name, port, "0", MAC]], timeout=5)
    assert not added.get("error")
    assert MAC in _fdb(rundir, name)
    assert vswitchd.forget_mac(rundir, name, port, MAC) is None
    assert MAC not in _fdb(rundir, name)
    # a MAC the bridge does not hold: nothing to forget, no error, nothing left behind
    assert vswitchd.forget_mac(rundir, name, port, MAC) is None
    assert MAC not in _fdb(rundir, name)


def test_forget_mac_on_a_missing_bridge_says_so(private_ovs: PrivateOvs, unique: str) -> None:
    require_root()
    reason = vswitchd.forget_mac(private_ovs.run_dir, f"nobr{unique}", "nope", MAC)
    assert reason is not None and "fdb/add" in reason and f"nobr{unique}" in reason


def test_requests_in_one_write_are_answered_in_order(private_ovs: PrivateOvs) -> None:
    require_root()
    replies = vswitchd.call(private_ovs.run_dir, [["version"], ["fdb/show", "no-such-bridge"], ["version"]])
    assert [bool(r.get("error")) for r in replies] == [False, True, False]
    assert "Open vSwitch" in str(replies[0]["result"]) and replies[0]["result"] == replies[2]["result"]
