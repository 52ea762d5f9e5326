"""The CNI verbs through the real shim, agent and private OVS-DPDK: results, files, idempotence, restarts, GC."""

from __future__ import annotations

import json
import os
import signal
import stat

from vhostplug.cni.planning import own_folder_name
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.model import port_name_for
from vhostplug_testsupport.cniagent import AgentProc, make_agent


def test_version_is_answered_by_the_shim_alone(agent: AgentProc) -> None:
    agent.stop()  # no agent needed
    r = agent.run("VERSION", {"cniVersion": "1.0.0"})
    assert r.code == 0
    assert r.out == {"cniVersion": "1.0.0", "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_add_with_device_id_writes_everything_and_del_removes_it(agent: AgentProc, unique: str) -> None:
    devinfo = agent.root / "devinfo" / "cni" / f"{unique}-net1"
    conf = agent.netconf(
        capabilities={"deviceID": True, "CNIDeviceInfoFile": True},
        runtimeConfig={"deviceID": "vu03", "CNIDeviceInfoFile": str(devinfo)},
        deviceID="vu03",
        mtu=1500,
        vlan=7,
        ipam={"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(agent.root / "ipam")},
    )
    cid = f"ctr{unique}"
    r = agent.run("ADD", conf, cid, args=f"K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p{unique};K8S_POD_UID=u-1")
    assert r.code == 0, r.raw
    folder = agent.socket_root / "vu03"
    iface = r.out["interfaces"][0]
    assert iface["name"] == "net1" and iface["sandbox"] == "/var/run/netns/test"
    assert iface["socketPath"] == str(folder / "vhu.sock")
    assert iface["mac"].startswith("02:") and iface["mtu"] == 1500
    assert r.out["ips"][0]["address"] == "10.77.0.2/24" and r.out["ips"][0]["interface"] == 0
    assert r.out["cniVersion"] == "1.1.0"
    # the port, tagged
    port = agent.dataplane.get_port(port_name_for(cid, "net1"))  # type: ignore[union-attr]
    assert port is not None and port.ovs_type == "dpdkvhostuserclient" and port.vlan == 7 and port.mtu == 1500
    assert port.socket_path == str(folder / "vhu.sock")
    assert port.external_ids["vhostplug-device-id"] == "vu03"
    # the folder: real, 0770
    st = os.lstat(folder)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o770
    # device-info: container-side path, mode server
    info = json.loads(devinfo.read_text())
    assert info == {
        "type": "vhost-user",
        "version": "1.1.0",
        "vhost-user": {"mode": "server", "path": "/var/run/vhostplug/vu03/vhu.sock"},
    }
    # kuryr-style app config file
    app = json.loads((folder / f"{cid}-net1").read_text())
    assert app == {"vhostname": "vhu.sock", "vhostmac": iface["mac"], "mode": "server"}
    # CHECK passes with prevResult
    assert agent.run("CHECK", {**conf, "prevResult": r.out}, cid).code == 0
    # DEL removes port, files, IPAM allocation; DEL again succeeds
    for _ in range(2):
        d = agent.run("DEL", conf, cid)
        assert d.code == 0, d.raw
        assert d.raw == ""
    assert agent.dataplane.get_port(port_name_for(cid, "net1")) is None  # type: ignore[union-attr]
    assert not devinfo.exists()
    assert not (folder / f"{cid}-net1").exists()
    assert not list((agent.root / "ipam" / "vhnet").glob("10.77.*"))


def test_add_without_device_id_uses_own_folder_and_del_removes_it(agent: AgentProc, unique: str) -> None:
    cid = f"{unique}abcdef0123456789"
    r = agent.run("ADD", agent.netconf(), cid)
    assert r.code == 0, r.raw
    folder = agent.socket_root / own_folder_name(cid, "net1")
    assert r.out["interfaces"][0]["socketPath"] == str(folder / "vhu.sock")
    assert folder.is_dir()
    assert agent.run("DEL", agent.netconf(), cid).code == 0
    assert not folder.exists()


def test_del_needs_only_its_env_and_succeeds_when_nothing_exists(agent: AgentProc, unique: str) -> None:
    r = agent.run("DEL", agent.netconf(), f"never{unique}", netns="")
    assert r.code == 0, r.raw


def test_check_fails_when_port_or_folder_is_gone(agent: AgentProc, unique: str) -> None:
    cid = f"chk{unique}"
    conf = agent.netconf(runtimeConfig={"deviceID": f"d{unique}"})
    r = agent.run("ADD", conf, cid)
    assert r.code == 0, r.raw
    with_prev = {**conf, "prevResult": r.out}
    assert agent.run("CHECK", with_prev, cid).code == 0
    # a different MAC in prevResult is a mismatch
    bad_prev = json.loads(json.dumps(r.out))
    bad_prev["interfaces"][0]["mac"] = "02:00:00:00:00:99"
    c = agent.run("CHECK", {**conf, "prevResult": bad_prev}, cid)
    assert c.code == 1 and "differs from prevResult" in c.out["msg"]
    # CHECK without prevResult is a config error
    assert agent.run("CHECK", conf, cid).out["code"] == 7
    agent.dataplane.detach(port_name_for(cid, "net1"))  # type: ignore[union-attr]
    c = agent.run("CHECK", with_prev, cid)
    assert c.code == 1 and c.out["code"] == 100 and "missing" in c.out["msg"]
    assert agent.run("DEL", conf, cid).code == 0


def test_status_and_gc(agent: AgentProc, unique: str) -> None:
    assert agent.run("STATUS", agent.netconf()).code == 0
    conf = agent.netconf()
    keep, drop = f"keep{unique}", f"drop{unique}"
    for cid in (keep, drop):
        assert agent.run("ADD", conf, cid).code == 0
    other = agent.netconf(name="othernet")
    assert agent.run("ADD", other, f"oth{unique}").code == 0
    gc = agent.run("GC", {**conf, "cni.dev/attachments": [{"containerID": keep, "ifname": "net1"}]})
    assert gc.code == 0, gc.raw
    names = agent.our_ports()
    assert port_name_for(keep, "net1") in names
    assert port_name_for(drop, "net1") not in names
    assert port_name_for(f"oth{unique}", "net1") in names, "GC of one network removed another network's port"
    assert not (agent.socket_root / own_folder_name(drop, "net1")).exists()
    for cid, c in ((keep, conf), (f"oth{unique}", other)):
        assert agent.run("DEL", c, cid).code == 0


def test_agent_restart_between_add_and_del(agent: AgentProc, unique: str) -> None:
    cid = f"rst{unique}"
    conf = agent.netconf(runtimeConfig={"deviceID": f"r{unique}"})
    assert agent.run("ADD", conf, cid).code == 0
    agent.stop(signal.SIGKILL)
    # while the agent is down, DEL does not hang: it fails fast with "try again later"
    r = agent.run("DEL", conf, cid)
    assert r.code == 1 and r.out["code"] == 11 and r.seconds < 10
    agent.start()  # no database: the new agent knows the port from OVSDB alone
    r = agent.run("DEL", conf, cid)
    assert r.code == 0, r.raw
    assert port_name_for(cid, "net1") not in agent.our_ports()
    assert not (agent.socket_root / f"r{unique}" / f"{cid}-net1").exists()


def test_cni_versions_negotiation(agent: AgentProc, unique: str) -> None:
    conf = agent.netconf(cniVersion="0.4.0", cniVersions=["0.4.0", "1.0.0"])
    conf["ipam"] = {"type": "host-local", "subnet": "10.78.0.0/24", "dataDir": str(agent.root / "ipam")}
    r = agent.run("ADD", conf, f"neg{unique}")
    assert r.code == 0, r.raw
    assert r.out["cniVersion"] == "1.0.0"
    assert "socketPath" not in r.out["interfaces"][0]  # a 1.1 field
    assert "version" not in r.out["ips"][0]
    conf04 = agent.netconf(cniVersion="0.4.0")
    conf04["ipam"] = conf["ipam"]
    r04 = agent.run("ADD", conf04, f"old{unique}")
    assert r04.code == 0 and r04.out["ips"][0]["version"] == "4"
    assert agent.run("DEL", conf, f"neg{unique}").code == 0
    assert agent.run("DEL", conf04, f"old{unique}").code == 0


def test_dead_ovs_status_50_add_11_and_nothing_made(private_ovs: PrivateOvs, unique: str) -> None:
    agent = make_agent(private_ovs, ovsdb=f"unix:/tmp/vhp-dead-{unique}.sock")
    try:
        st = agent.run("STATUS", agent.netconf())
        assert st.code == 1 and st.out["code"] == 50 and "cannot connect" in st.out.get("details", "")
        r = agent.run("ADD", agent.netconf(runtimeConfig={"deviceID": f"x{unique}"}), f"dead{unique}")
        assert r.code == 1 and r.out["code"] == 11
        assert list((agent.socket_root / f"x{unique}").iterdir()) == [], "a failed ADD left something in the folder"
    finally:
        agent.stop()
        agent.dataplane.close()  # type: ignore[union-attr]
