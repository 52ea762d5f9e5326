"""Property: whatever netconf, CNI_* environment and planted links a NAD author or a pod comes up with, an ADD the
agent refuses leaves no port, bridge, folder, file, lease or changed mode/owner anywhere. Real shim, agent and OVS;
hypothesis draws the inputs (bounded: a few dozen ADDs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vhostplug.dataplane import ovsdb_rpc
from vhostplug_testsupport.cniagent import AgentProc

BRIDGES = [None, "br-cni", "br-other", ";id", "`id`", "br\u202eevil", "br\ufeff", "a b", "\u00df" * 8, "x" * 16, "br/x"]
SOCKET_ROOTS = [None, "ALLOWED", "/etc", "/tmp", "/var/run/other", "relative/path"]
CONTAINER_ROOTS = [None, "/var/run/vhostplug", "/etc", "/"]
DEVICES = [None, "vuok", "notalloc", "../x", "link", "taken", "a/b"]
DEVINFO = [None, "INSIDE", "/etc/vhp-devinfo.json", "INSIDE/../../../etc/x.json", "VIA_LINK", "/tmp/x.json"]
IPAMS = [None, "host-local", "bridge", "../x", "static-but-evil"]
CIDS = ["cidA", "cidB", "a/b", "..", "", "x" * 300]
IFNAMES = ["net1", "eth0", "a" * 16, "a/b", ""]
MODES = ["server", "client", "sideways"]


def _snapshot(agent: AgentProc, extra: list[Path]) -> dict[str, tuple[int, int, int, int]]:
    out: dict[str, tuple[int, int, int, int]] = {}
    for base in [agent.socket_root, agent.devinfo_root, agent.root / "state", agent.root / "ipam", *extra]:
        if not os.path.lexists(base):
            continue
        for p in [base, *base.rglob("*")] if base.is_dir() and not base.is_symlink() else [base]:
            st_ = os.lstat(p)
            out[str(p)] = (st_.st_mode, st_.st_uid, st_.st_gid, st_.st_size)
    return out


def _bridges(agent: AgentProc) -> list[str]:
    return sorted(str(r["name"]) for r in ovsdb_rpc.select(agent.ovs.endpoint, "Bridge", columns=["name"]))


def _netconf(agent: AgentProc, d: dict[str, Any]) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.1.0",
        "name": "prop",
        "type": "vhostplug",
        "agentSocket": str(agent.socket),
        "mode": d["mode"],
    }
    if d["bridge"] is not None:
        conf["bridge"] = d["bridge"]
    if d["socket_root"] is not None:
        conf["socketRoot"] = str(agent.socket_root) if d["socket_root"] == "ALLOWED" else d["socket_root"]
    if d["container_root"] is not None:
        conf["containerSocketRoot"] = d["container_root"]
    rc: dict[str, Any] = {}
    if d["device"] is not None:
        rc["deviceID"] = d["device"]
    if d["devinfo"] is not None:
        v = d["devinfo"]
        v = v.replace("INSIDE", str(agent.devinfo_root / "cni")).replace(
            "VIA_LINK", str(agent.devinfo_root / "ldir" / "f")
        )
        rc["CNIDeviceInfoFile"] = v
    if rc:
        conf["runtimeConfig"] = rc
    if d["ipam"] is not None:
        conf["ipam"] = {"type": d["ipam"], "subnet": "10.93.0.0/24", "dataDir": str(agent.root / "ipam")}
    return conf


def test_a_refused_add_leaves_nothing_anywhere(agent: AgentProc, unique: str, short_dir: Path) -> None:
    # the scene: an allocated device, one attached to another container, planted links in the socket and devinfo roots
    agent.allocate("vuok")
    taken = agent.run("ADD", agent.netconf(runtimeConfig={"deviceID": "taken"}), f"own{unique}")
    assert taken.code == 0, taken.raw
    victim_dir = short_dir / "victim"
    victim_dir.mkdir(mode=0o700)
    (victim_dir / "f").write_text("x")
    (agent.socket_root / "link").symlink_to(victim_dir)
    (agent.devinfo_root / "ldir").symlink_to(victim_dir)
    from vhostplug import deviceinfo
    from vhostplug.cni.policy import DEFAULT_DEVICE_RESOURCE

    deviceinfo.write_dp(agent.devinfo_root, DEFAULT_DEVICE_RESOURCE, "link", {"type": "vhost-user"})
    refused = accepted = 0

    @settings(
        max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        st.fixed_dictionaries(
            {
                "bridge": st.sampled_from(BRIDGES),
                "socket_root": st.sampled_from(SOCKET_ROOTS),
                "container_root": st.sampled_from(CONTAINER_ROOTS),
                "device": st.sampled_from(DEVICES),
                "devinfo": st.sampled_from(DEVINFO),
                "ipam": st.sampled_from(IPAMS),
                "cid": st.sampled_from(CIDS),
                "ifname": st.sampled_from(IFNAMES),
                "mode": st.sampled_from(MODES),
            }
        )
    )
    def one(d: dict[str, Any]) -> None:
        nonlocal refused, accepted
        before, ports, bridges = _snapshot(agent, [victim_dir]), agent.our_ports(), _bridges(agent)
        r = agent.run("ADD", _netconf(agent, d), d["cid"], ifname=d["ifname"])
        if r.code == 0:
            accepted += 1
            assert agent.run("DEL", {"agentSocket": str(agent.socket)}, d["cid"], ifname=d["ifname"]).code == 0
            return
        refused += 1
        assert set(r.out) <= {"cniVersion", "code", "msg", "details"}, r.raw
        assert agent.our_ports() == ports, f"{d}: a refused ADD left a port"
        assert _bridges(agent) == bridges, f"{d}: a refused ADD left a bridge"
        after = _snapshot(agent, [victim_dir])
        assert after == before, f"{d}: a refused ADD changed {set(after.items()) ^ set(before.items())}"

    one()
    assert refused > 10, f"only {refused} refusals in the run"
    assert agent.run("DEL", agent.netconf(runtimeConfig={"deviceID": "taken"}), f"own{unique}").code == 0
