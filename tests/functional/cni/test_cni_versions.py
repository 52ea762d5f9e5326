"""Every CNI version a runtime or meta-plugin may send, through the installed shim, a real agent and private OVS:
ADD answers in the asked version's result shape, CHECK only where the version has it, DEL of an attachment made
under another version, VERSION lists them all, a version we do not know gets code 1 naming the supported ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from vhostplug.cni.spec import SUPPORTED_VERSIONS
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import port_name_for
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent


@pytest.fixture(scope="module")
def agent(private_ovs: PrivateOvs) -> Iterator[AgentProc]:
    a = make_agent(private_ovs)
    try:
        yield a
    finally:
        stop_agent(a)


def _conf(agent: AgentProc, version: str, device: str) -> dict[str, Any]:
    return agent.netconf(
        cniVersion=version,
        name="vernet",
        capabilities={"deviceID": True},
        deviceID=device,
        runtimeConfig={"deviceID": device},
        ipam={"type": "host-local", "subnet": "10.79.0.0/24", "dataDir": str(agent.root / "ipam")},
    )


def _allocated(agent: AgentProc) -> list[str]:
    folder = agent.root / "ipam" / "vernet"
    return sorted(p.name for p in folder.glob("10.79.*")) if folder.exists() else []


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_check_del_in_each_version(agent: AgentProc, unique: str, version: str) -> None:
    cid, device = f"v{version.replace('.', '')}{unique}", f"vd{unique}"
    conf = _conf(agent, version, device)
    r = agent.run("ADD", conf, cid)
    assert r.code == 0, r.raw
    out = r.out
    assert out["cniVersion"] == version
    socket = str(agent.socket_root / device / "vhu.sock")
    if version in ("0.1.0", "0.2.0"):  # no interfaces in these versions: one address per family
        assert set(out) == {"cniVersion", "ip4"} and out["ip4"]["ip"].startswith("10.79.0.")
        assert out["ip4"]["gateway"] == "10.79.0.1"
    else:
        iface = out["interfaces"][0]
        assert iface["name"] == "net1" and iface["sandbox"] == "/var/run/netns/test" and iface["mac"].startswith("02:")
        ip = out["ips"][0]
        assert ip["address"].startswith("10.79.0.") and ip["interface"] == 0
        if version < "1.0.0":
            assert ip["version"] == "4"
        else:
            assert "version" not in ip
        assert ("socketPath" in iface) == (version == "1.1.0")
        if version == "1.1.0":
            assert iface["socketPath"] == socket
    port = agent.dataplane.get_port(port_name_for(cid, "net1"))  # type: ignore[union-attr]
    assert port is not None and port.socket_path == socket
    assert len(_allocated(agent)) == 1
    check = agent.run("CHECK", {**conf, "prevResult": out}, cid)
    if version in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):  # CHECK came with 0.4.0
        assert check.code == 1 and check.out["code"] == 1 and "CHECK" in check.out["msg"], check.raw
        assert check.out["cniVersion"] == version
    else:
        assert check.code == 0, check.raw
    # DEL under another version than ADD's (a NAD edited in between, or a runtime that upgraded)
    other = "1.1.0" if version != "1.1.0" else "0.1.0"
    for _ in range(2):
        d = agent.run("DEL", _conf(agent, other, device), cid)
        assert d.code == 0 and d.raw == "", d.raw
    assert agent.dataplane.get_port(port_name_for(cid, "net1")) is None  # type: ignore[union-attr]
    assert _allocated(agent) == [], "the address of an attachment deleted under another version was not released"
    assert not (agent.socket_root / device / f"{cid}-net1").exists()


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_version_lists_every_version(agent: AgentProc, version: str) -> None:
    r = agent.run("VERSION", {"cniVersion": version})
    assert r.code == 0 and r.out == {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_unknown_version_is_code_1_naming_the_supported_ones(agent: AgentProc, unique: str, command: str) -> None:
    r = agent.run(command, {**_conf(agent, "0.5.0", f"u{unique}"), "prevResult": {}}, f"unk{unique}")
    assert r.code == 1 and r.out["code"] == 1, r.raw
    assert "0.5.0" in r.out["msg"]
    assert all(v in r.out["details"] for v in SUPPORTED_VERSIONS)
    assert agent.dataplane.get_port(port_name_for(f"unk{unique}", "net1")) is None  # type: ignore[union-attr]


def test_status_needs_1_1_0(agent: AgentProc) -> None:
    r = agent.run("STATUS", agent.netconf(cniVersion="1.0.0"))
    assert r.code == 1 and r.out["code"] == 1 and "STATUS" in r.out["msg"], r.raw
    assert agent.run("STATUS", agent.netconf(cniVersion="1.1.0")).code == 0
