"""Issue 7 end to end: a VM booted in the OLD vhost-user mode (OVS ``dpdkvhostuser`` owns the socket, QEMU is the
client) pings a testpmd (``icmpecho``) through the private OVS-DPDK; ``vhostplug migrate-mode --to server
--force-running`` restarts it cold in server mode (OVS port retyped to ``dpdkvhostuserclient``) and the guest, booted
again, pings through OVS once more: console line from the new boot, growing OVS and testpmd counters."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.conftest import require_root
from tests.functional.audit.conftest import OvsPorts
from tests.functional.audit.test_audit_migrate import GROUP, cli, wait_socket
from vhostplug.lab import ovsdb, vms
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.testpmd import Testpmd

VM_IP, PEER_IP = "10.88.0.2/24", "10.88.0.1"
MAC = "02:88:00:00:00:02"
ALIAS = "ua-net1"


def _poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not seen within {timeout:.0f}s"
        time.sleep(0.5)


def vm_xml(name: str, console_log: Path, sock: Path) -> bytes:
    """The lab guest (continuous pings to the peer) with one client-mode vhost-user NIC on OVS's socket."""
    base = vms.lab_domain_xml(name, console_log, f"vhp.ip={VM_IP} vhp.peer={PEER_IP} vhp.interval=0.2")
    root = etree.fromstring(base.encode())
    mem = etree.Element("memoryBacking")
    etree.SubElement(mem, "source", type="memfd")
    etree.SubElement(mem, "access", mode="shared")  # vhost-user passes nothing without shared guest memory
    root.find("vcpu").addprevious(mem)  # type: ignore[union-attr]
    iface = etree.SubElement(root.find("devices"), "interface", type="vhostuser")  # type: ignore[arg-type]
    etree.SubElement(iface, "mac", address=MAC)
    etree.SubElement(iface, "source", type="unix", path=str(sock), mode="client")
    etree.SubElement(iface, "model", type="virtio")
    etree.SubElement(iface, "alias", name=ALIAS)
    return vms.add_lab_overrides(etree.tostring(root))


@pytest.fixture
def old_mode_vm(private_ovs: PrivateOvs, libvirt_uri: str, short_dir: Path) -> Iterator[dict[str, Any]]:
    """testpmd icmpecho behind a dpdkvhostuserclient port, and a running VM on a deprecated dpdkvhostuser port."""
    import libvirt

    require_root()
    tag = uuid.uuid4().hex[:6]
    short_dir.chmod(0o755)  # QEMU (libvirt-qemu) must reach the socket folder and the console log inside
    names = {"vm": f"vhumv{tag}", "peer": f"vhupr{tag}"}
    domain = f"vhp-mt-{tag}"
    peer_sock = short_dir / "peer.sock"
    ports = OvsPorts(private_ovs, f"brmt{tag}")
    testpmd = Testpmd([f"net_virtio_user0,path={peer_sock},server=1"], file_prefix=f"vhpmt{tag}")
    conn = libvirt.open(libvirt_uri)
    try:
        ports.add(names["peer"], "dpdkvhostuserclient", {"vhost-server-path": str(peer_sock)})
        testpmd.start()  # server=1: waits for OVS to connect before its first prompt
        testpmd.cmd("set fwd icmpecho")  # answers ARP requests and ICMP echo requests
        testpmd.wait_link_up()
        testpmd.cmd("start")
        ports.add(names["vm"], "dpdkvhostuser")
        old_sock = private_ovs.vhost_sock_dir / names["vm"]
        wait_socket(old_sock)
        old_sock.chmod(0o777)  # OVS (root) made it root-only; QEMU connects as libvirt-qemu
        console_log = short_dir / "console.log"
        conn.defineXML(vm_xml(domain, console_log, old_sock).decode())
        conn.lookupByName(domain).create()
        yield {"conn": conn, "domain": domain, "ports": ports, "names": names, "testpmd": testpmd,
               "old_sock": old_sock, "console": vms.Console(console_log), "endpoint": private_ovs.endpoint,
               "sockdir": short_dir / "vs"}  # fmt: skip
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByName(domain)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        conn.close()
        testpmd.stop()
        ports.cleanup()


def test_old_mode_vm_migrated_to_server_mode_passes_traffic(old_mode_vm: dict[str, Any], libvirt_uri: str) -> None:
    import libvirt

    lab = old_mode_vm
    conn, domain, names = lab["conn"], lab["domain"], lab["names"]
    console: vms.Console = lab["console"]
    testpmd: Testpmd = lab["testpmd"]
    ep = lab["endpoint"]
    port = names["vm"]

    def stats() -> dict[str, int]:
        return ovsdb.interface_stats(ep, [port])[port]

    # -- OLD mode works: the guest reaches testpmd through OVS --------------------------------------------------
    m = console.wait_for(r"VHP-PING-OK peer=(\S+)", 90)
    assert m.group(1) == PEER_IP
    assert lab["ports"].interface(port)["type"] == "dpdkvhostuser"
    old_text = console.text()
    assert old_text.count("VHP-READY") == 1

    # -- migrate-mode --to server, forced on the running domain (cold restart) -----------------------------------
    sockdir: Path = lab["sockdir"]
    base = ["--ovsdb", ep, "--libvirt-uri", libvirt_uri]
    mig = ["migrate-mode", "--to", "server", "--socket-dir", str(sockdir), "--group", GROUP, "--domain", domain]
    t0 = time.monotonic()
    rc, done, err = cli(*mig, *base, "--force-running")
    migrate_s = time.monotonic() - t0
    assert rc == 0, (done, err)
    assert [(s["action"], s["status"]) for s in done["domains"][0]["steps"]] == [
        ("destroy", "done"),
        ("redefine", "done"),
        ("retype-port", "done"),
        ("start", "done"),
    ]
    new_sock = sockdir / port
    dom = conn.lookupByName(domain)
    assert dom.isActive()
    live = etree.fromstring(dom.XMLDesc(0).encode()).find("devices/interface[@type='vhostuser']/source")
    assert live is not None and (live.get("mode"), live.get("path")) == ("server", str(new_sock))
    iface = lab["ports"].interface(port)
    assert iface["type"] == "dpdkvhostuserclient" and iface["options"]["vhost-server-path"] == str(new_sock)
    assert not lab["old_sock"].exists()  # OVS dropped its own socket with the deprecated port
    tp_rx0 = testpmd.stats()[0].rx_packets

    # -- the NEW boot pings through OVS: only the console written after the restart counts ---------------------
    def new_output() -> str:
        text = console.text()
        return text[len(old_text) :] if text.startswith(old_text) else text  # appended, or truncated by libvirt

    t1 = time.monotonic()
    _poll(lambda: "VHP-READY" in new_output(), 90, "VHP-READY from the guest's new boot")
    _poll(lambda: "VHP-PING-OK" in new_output() or "VHP-PING-FAIL" in new_output(), 90, "the new boot's ping result")
    ping_s = time.monotonic() - t1
    assert f"VHP-PING-OK peer={PEER_IP}" in new_output(), new_output()[-2000:]
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    # -- counters keep growing: the migrated OVS port and testpmd carry the guest's continuous pings -------------
    first = _poll(lambda: (s := stats()).get("rx_packets", 0) > 0 and s.get("tx_packets", 0) > 0 and s, 20, "counters")
    later = _poll(
        lambda: (s := stats())["rx_packets"] > first["rx_packets"] and s["tx_packets"] > first["tx_packets"] and s,
        20,
        "growing OVS counters on the migrated port",
    )
    tp_rx1 = testpmd.stats()[0].rx_packets
    assert tp_rx1 > tp_rx0, (tp_rx0, tp_rx1)
    rx_tx = [(s["rx_packets"], s["tx_packets"]) for s in (first, later)]
    print(
        f"migrate-mode {migrate_s:.1f}s, new boot pinged after {ping_s:.1f}s; ovs rx/tx {rx_tx}, testpmd rx +{tp_rx1 - tp_rx0}"
    )
