"""Issue 5 end to end on real parts: two libvirt/QEMU VMs whose vhost-user interfaces come from our sidecar's rewrite,
attached to the private OVS-DPDK as dpdkvhostuserclient ports, ping each other (read from their serial consoles)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from lxml import etree

from tests.conftest import require_root
from tests.functional.kubevirt.lab import LauncherPod, vmi_json
from vhostplug.lab import ovsdb, vms
from vhostplug.lab.ovs import PrivateOvs


def test_two_vms_ping_through_ovs(private_ovs: PrivateOvs, libvirt: vms.Libvirt, short_dir: Path, unique: str) -> None:
    require_root()
    bridge = f"brk{unique[:6]}"
    pods = {"a": LauncherPod(short_dir / "a"), "b": LauncherPod(short_dir / "b")}
    ips = {"a": ("10.77.0.1/24", "10.77.0.2"), "b": ("10.77.0.2/24", "10.77.0.1")}
    names = {k: f"vhp-{k}-{unique}" for k in pods}
    try:
        for key, pod in pods.items():
            pod.root.mkdir()
            pod.prepare()
            pod.start_sidecar()
            ip, peer = ips[key]
            base = vms.lab_domain_xml(names[key], pod.root / "console.log", f"vhp.ip={ip} vhp.peer={peer}")
            xml = pod.define_domain(base, vmi_json(names[key], f"02:77:00:00:00:0{ord(key) - 96}"))
            (src,) = etree.fromstring(xml).xpath("//interface[@type='vhostuser']/source")
            assert src.get("path") == f"{pod.links_dir}/net1/vhu.sock"
            assert b"qemu:override" not in xml  # the lab workaround never comes from the sidecar
            libvirt.define(vms.add_lab_overrides(xml), pod.root)
        ovsdb.add_vhost_client_ports(
            private_ovs.endpoint, bridge, {f"vhu{k}{unique[:6]}": str(p.real_socket) for k, p in pods.items()}
        )
        for key in pods:
            libvirt.start_domain(names[key])
        for key in pods:
            libvirt.wait_state(names[key], "running", 60)
        for pod in pods.values():
            # QEMU bound its server socket through the link, inside the real device folder
            assert pod.real_socket.is_socket()
            assert os.readlink(pod.links_dir / "net1") == str(pod.device_dir)
        consoles = {k: vms.Console(p.root / "console.log") for k, p in pods.items()}
        for key in pods:
            consoles[key].wait_for(r"VHP-READY", 90)
        for key in pods:
            m = consoles[key].wait_for(r"VHP-PING-OK peer=(\S+)", 90)
            assert m.group(1) == ips[key][1]
        # OVS publishes counters every few seconds: the ports carried traffic both ways
        ports = [f"vhu{k}{unique[:6]}" for k in pods]
        deadline = time.monotonic() + 15
        while True:
            stats = ovsdb.interface_stats(private_ovs.endpoint, ports)
            if all(c.get("rx_packets", 0) > 0 and c.get("tx_packets", 0) > 0 for c in stats.values()):
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.5)
    finally:
        for key, pod in pods.items():
            with contextlib.suppress(Exception):
                libvirt.remove(names[key])
            pod.shutdown()
        with contextlib.suppress(Exception):
            ovsdb.del_bridge(private_ovs.endpoint, bridge)
    for pod in pods.values():
        assert not (pod.links_dir / "net1").is_symlink()  # Shutdown removed the sidecar's link
