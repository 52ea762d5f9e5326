"""vDPA attachments through the real shim and agent on the private OVS-DPDK, with stand-in vDPA parts: veth pairs
play the virtio-vdpa netdev and its representor, a mknod'ed char node plays /dev/vhost-vdpa-N, the sysfs tree is the
pool's layout with switchdev attributes (see vhostplug.lab.vdpa_parts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.functional.vdpa.conftest import VHOST_POOL, VdpaRig, host_link, in_pod
from vhostplug.cni.records import RecordStore

VHOSTPLUG = str(Path(sys.executable).with_name("vhostplug"))


def diagnose(rig: VdpaRig) -> str:
    """What OVS and the kernel show, for a failed ping's message."""
    ovs = rig.agent.ovs
    cmds = [
        ["ovs-appctl", "-t", str(ovs.vswitchd_ctl), "dpif/show"],
        ["ovs-appctl", "-t", str(ovs.vswitchd_ctl), "fdb/show", rig.bridge],
        ["ip", "-n", ovs.netns, "-s", "link"],
        ["ovs-vsctl", f"--db={ovs.endpoint}", "show"],
    ]
    out = []
    for cmd in cmds:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        out.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return "\n".join(out) + "\n" + ovs.vswitchd_log.read_text()[-3000:]


def test_two_pods_ping_through_representors_on_ovs_and_del_returns_netdevs(vdpa_rig: VdpaRig) -> None:
    rig = vdpa_rig
    a, b = rig.pod("a"), rig.pod("b")
    va, vb = rig.parts.vfs[0], rig.parts.vfs[1]
    mac_before = host_link(va.netdev)
    assert mac_before is not None
    ra = rig.add(a, "cid-a", "vdpa0", mtu=1400, vlan=12)
    assert ra.code == 0, ra.out
    rb = rig.add(b, "cid-b", "0000:65:00.3", mtu=1400, vlan=12)  # by PCI address, as Multus passes it
    assert rb.code == 0, rb.out
    pod_if = ra.out["interfaces"][1]
    assert ra.out["interfaces"][0]["name"] == va.representor and "sandbox" not in ra.out["interfaces"][0]
    assert pod_if["name"] == "net1" and pod_if["sandbox"] == a.netns_path and pod_if["mtu"] == 1400
    assert pod_if["pciID"] == va.pci and ra.out["ips"][0]["interface"] == 1
    # the netdev left the host and is net1 in the pod, with the result's MAC, MTU, address, up
    assert host_link(va.netdev) is None
    link = json.loads(in_pod(a, "ip", "-j", "addr", "show", "net1").stdout)[0]
    assert link["address"] == pod_if["mac"] and link["mtu"] == 1400 and "UP" in link["flags"]
    assert f"{link['addr_info'][0]['local']}/24" == ra.out["ips"][0]["address"]
    # the representor is a system port on the bridge, tagged, with our identity
    assert rig.agent.dataplane is not None
    port = rig.agent.dataplane.get_port(va.representor)
    assert port is not None and port.bridge == rig.bridge and port.ovs_type == "system" and port.vlan == 12
    assert port.mtu == 1400 and port.ofport and port.ofport > 0
    ids = port.external_ids
    assert ids["vhostplug-attachment"] == "cid-a/net1" and ids["vhostplug-vdpa-device"] == "vdpa0"
    assert ids["vhostplug-vdpa-netdev"] == va.netdev and ids["attached-mac"] == pod_if["mac"]
    info = json.loads(rig.devinfo_path("cid-a").read_text())
    assert info["type"] == "vdpa" and info["vdpa"]["driver"] == "virtio" and info["vdpa"]["path"] == "net1"
    assert info["vdpa"]["representor-device"] == va.representor
    # traffic: pod a -> net1 (veth) -> representor -> OVS-DPDK bridge -> representor -> net1 in pod b
    ip_b = rb.out["ips"][0]["address"].split("/")[0]
    ping = in_pod(a, "ping", "-c", "3", "-i", "0.2", "-W", "2", ip_b)
    assert ping.returncode == 0, ping.stdout + ping.stderr + diagnose(rig)
    # CHECK agrees with what is there, and notices when it is not
    conf_a = rig.netconf("vdpa0", mtu=1400, vlan=12, prevResult=ra.out)
    assert rig.agent.run("CHECK", conf_a, "cid-a", "net1", a.netns_path).code == 0
    in_pod(a, "ip", "addr", "flush", "dev", "net1")
    bad = rig.agent.run("CHECK", conf_a, "cid-a", "net1", a.netns_path)
    assert bad.code == 1 and "lacks address" in bad.out["msg"]
    # DEL: the netdevs come back under their names and MACs, representors leave the bridge, files go
    for pod, cid, dev in ((a, "cid-a", "vdpa0"), (b, "cid-b", "0000:65:00.3")):
        assert rig.agent.run("DEL", rig.netconf(dev), cid, "net1", pod.netns_path).code == 0
    back = host_link(va.netdev)
    assert back is not None and back["address"] == mac_before["address"] and back["mtu"] == mac_before["mtu"]
    assert host_link(vb.netdev) is not None
    assert in_pod(a, "ip", "link", "show", "net1").returncode != 0
    assert rig.ports() == [] and rig.agent.dataplane.get_port(va.representor) is None
    assert not rig.devinfo_path("cid-a").exists()
    # a second DEL finds nothing and succeeds
    assert rig.agent.run("DEL", rig.netconf("vdpa0"), "cid-a", "net1", a.netns_path).code == 0


def test_vhost_vdpa_device_and_podinfo_prints_its_vdev(vdpa_rig: VdpaRig) -> None:
    rig = vdpa_rig
    pod = rig.pod("v")
    vf = rig.parts.vfs[3]
    rc = {"deviceID": "vdpa3", "mac": "02:aa:00:00:00:03"}
    r = rig.add(pod, "cid-v", "vdpa3", pool=VHOST_POOL, runtimeConfig=rc, ifaceID="ovn-lsp-v")
    assert r.code == 0, r.out
    iface = r.out["interfaces"][1]
    assert iface["socketPath"] == "/dev/vhost-vdpa-3" and iface["mac"] == "02:aa:00:00:00:03"
    assert host_link(f"vx{rig.parts.tag}3") is not None  # nothing moved for vhost-vdpa
    info = json.loads(rig.devinfo_path("cid-v").read_text())
    assert info["vdpa"] == {
        "parent-device": "vdpa3",
        "driver": "vhost",
        "path": "/dev/vhost-vdpa-3",
        "pci-address": vf.pci,
        "pf-pci-address": "0000:65:00.0",
        "representor-device": vf.representor,
    }
    # Multus' network-status (device-info read back after ADD) in the pod's downward API file; podinfo reads it
    status = [{"name": "default/vdpanet", "interface": "net1", "mac": iface["mac"], "device-info": info}]
    from vhostplug.podinfo.goquote import quote

    pod.write("/etc/podnetinfo/annotations", f"k8s.v1.cni.cncf.io/network-status={quote(json.dumps(status))}\n")
    out = pod.exec(VHOSTPLUG, "podinfo", "--dpdk-args", what="podinfo")
    assert out.split() == ["--vdev", "virtio_user0,path=/dev/vhost-vdpa-3"]
    port = rig.agent.dataplane.get_port(vf.representor) if rig.agent.dataplane else None
    assert port is not None and port.external_ids["vhostplug-vdpa-driver"] == "vhost"
    assert port.external_ids["iface-id"] == "ovn-lsp-v"  # OVN's logical port, when the network names it
    assert rig.agent.run("DEL", rig.netconf("vdpa3", pool=VHOST_POOL), "cid-v", "net1", pod.netns_path).code == 0
    assert rig.ports() == [] and not rig.devinfo_path("cid-v").exists()


def test_del_after_the_pod_namespace_is_gone_finds_the_netdev_by_its_stored_identity(vdpa_rig: VdpaRig) -> None:
    rig = vdpa_rig
    pod = rig.pod("g")
    vf = rig.parts.vfs[0]
    r = rig.add(pod, "cid-g", "vdpa0")
    assert r.code == 0, r.out
    # what the kernel does to a physical netdev when its namespace dies: back to the host (here under "dev7")
    moved = subprocess.run(
        ["ip", "-n", pod.netns, "link", "set", "net1", "netns", "1", "name", "vhpdev7"], capture_output=True
    )
    assert moved.returncode == 0, moved.stderr
    subprocess.run(["ip", "netns", "del", pod.netns], check=True)
    assert rig.agent.run("DEL", rig.netconf("vdpa0"), "cid-g", "net1", pod.netns_path).code == 0
    assert host_link("vhpdev7") is None and host_link(vf.netdev) is not None
    assert rig.ports() == []


def test_bad_input_is_a_clear_error_and_leaves_nothing(vdpa_rig: VdpaRig) -> None:
    rig = vdpa_rig
    pod = rig.pod("x")
    cases = [
        ("vdpa42", {}, "no vDPA device 'vdpa42'"),
        ("vdpa3", {}, "belongs to pool vhostplug.io/vdpa_vhost, not to vhostplug.io/vdpa_virtio"),
    ]
    for device, kw, msg in cases:
        r = rig.add(pod, "cid-x", device, **kw)
        assert r.code == 1 and msg in r.out["msg"], r.out
    # no representor: the e-switch does not list VF 2's port any more
    rep_dir = rig.parts.sys / "class/net" / rig.parts.vfs[2].representor
    (rep_dir / "phys_port_name").write_text("pf0vf9\n")
    r = rig.add(pod, "cid-x", "vdpa2")
    assert r.code == 1 and "no representor of VF 2" in r.out["msg"], r.out
    # sysfs names a netdev the host does not have
    vf1 = rig.parts.vfs[1]
    net = rig.parts.pci(vf1.pci) / "vdpa1" / "virtio1" / "net" / vf1.netdev
    net.rename(net.with_name("gone"))
    r = rig.add(pod, "cid-x", "vdpa1")
    assert r.code == 1 and "netdev gone of vDPA device vdpa1 is not in the host" in r.out["msg"], r.out
    net.with_name("gone").rename(net)
    # unhealthy, as the pool judges it: the vhost-vdpa char device is gone
    node = rig.parts.dev / "vhost-vdpa-3"
    st = node.stat()
    node.unlink()
    r = rig.add(pod, "cid-x", "vdpa3", pool=VHOST_POOL)
    assert r.code == 1 and "vDPA device vdpa3 is unhealthy" in r.out["msg"], r.out
    os.mknod(node, st.st_mode, st.st_rdev)
    # the pod already has an interface of that name: nothing moved, the IP given back
    subprocess.run(["ip", "-n", pod.netns, "link", "add", "net1", "type", "veth", "peer", "name", "xpeer"], check=True)
    r = rig.add(pod, "cid-x", "vdpa1")
    assert r.code == 1 and "net1 already exists in the pod" in r.out["msg"], r.out
    assert host_link(vf1.netdev) is not None and rig.ports() == []
    subprocess.run(["ip", "-n", pod.netns, "link", "del", "net1"], check=True)
    # in use: a second pod cannot take the device another attachment holds
    assert rig.add(pod, "cid-x", "vdpa1").code == 0
    other = rig.pod("y")
    r = rig.add(other, "cid-y", "vdpa1")
    assert r.code == 1 and "in use by cid-x/net1" in r.out["msg"], r.out
    assert rig.ports() == [vf1.representor]
    # no deviceID at all
    conf = rig.netconf("vdpa1")
    conf["runtimeConfig"] = {}
    r = rig.agent.run("ADD", conf, "cid-z", "net1", other.netns_path)
    assert r.code == 1 and "needs runtimeConfig.deviceID" in r.out["msg"]
    # only cid-x's IP stays allocated
    ipam_files = sorted(p.name for p in (rig.root / "ipam" / "vdpanet").iterdir() if p.name[0].isdigit())
    assert len(ipam_files) == 1
    assert rig.agent.run("DEL", rig.netconf("vdpa1"), "cid-x", "net1", pod.netns_path).code == 0
    assert rig.ports() == []


def test_gc_and_status_cover_vdpa(vdpa_rig: VdpaRig) -> None:
    rig = vdpa_rig
    a, b = rig.pod("ga"), rig.pod("gb")
    assert rig.add(a, "cid-ga", "vdpa0").code == 0
    assert rig.add(b, "cid-gb", "vdpa1").code == 0
    conf = rig.netconf("", pool=None)
    conf.pop("runtimeConfig")
    conf["cni.dev/valid-attachments"] = [{"containerID": "cid-gb", "ifname": "net1"}]
    conf["cniVersion"] = "1.1.0"
    assert rig.agent.run("GC", conf, "", "").code == 0
    assert rig.ports() == [rig.parts.vfs[1].representor]
    assert host_link(rig.parts.vfs[0].netdev) is not None  # GC returned cid-ga's netdev
    assert rig.agent.run("STATUS", conf, "", "").code == 0
    assert rig.agent.run("DEL", rig.netconf("vdpa1"), "cid-gb", "net1", b.netns_path).code == 0
    assert rig.ports() == []


def test_gc_finds_a_representor_port_whose_record_is_lost(vdpa_rig: VdpaRig) -> None:
    """GC lists the switch's ports by their external_ids, representors included: an attachment whose record is gone
    (a wiped state folder) is still collected, its netdev given back to the host."""
    rig = vdpa_rig
    pod, vf = rig.pod("gl"), rig.parts.vfs[0]
    assert rig.add(pod, "cid-gl", "vdpa0").code == 0
    assert rig.ports() == [vf.representor]
    assert RecordStore(rig.agent.root / "state").remove("cid-gl", "net1")
    conf = rig.netconf("", pool=None)
    conf.pop("runtimeConfig")
    conf["cni.dev/valid-attachments"] = []
    conf["cniVersion"] = "1.1.0"
    assert rig.agent.run("GC", conf, "", "").code == 0
    assert rig.ports() == []
    assert host_link(vf.netdev) is not None  # the netdev is back in the host under its own name

