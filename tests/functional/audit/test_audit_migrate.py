"""`vhostplug audit` and `vhostplug migrate-mode` against the private OVS-DPDK and a real libvirtd.

Two stopped domains face two ``dpdkvhostuser`` ports: vm-a correctly (mode='client'), vm-b wrongly (mode='server').
The audit must join them by socket path and report the deprecated ports and vm-b's mismatch; migrate-mode must plan,
then move vm-a to server mode (domain XML and OVS Interface), after which the audit sees no mismatch for it.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.conftest import require_root
from tests.functional.audit.conftest import OvsPorts
from vhostplug.lab.ovs import PrivateOvs

VHOSTPLUG = str(Path(sys.executable).parent / "vhostplug")
# a group QEMU holds (Debian runs QEMU as libvirt-qemu:libvirt-qemu) so the VM started in server mode can make its socket
GROUP = "libvirt-qemu" if "libvirt-qemu" in {g.gr_name for g in grp.getgrall()} else "qemu"


def domain_xml(name: str, sock: str, mode: str) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='vhostuser'>
      <mac address='02:00:00:00:0a:01'/>
      <source type='unix' path='{sock}' mode='{mode}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <graphics type='vnc' autoport='yes'/>
  </devices>
</domain>"""


def cli(*args: str) -> tuple[int, Any, str]:
    proc = subprocess.run([VHOSTPLUG, *args, "--json"], capture_output=True, text=True, check=False, timeout=120)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc.returncode, data, proc.stderr


def wait_socket(path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_socket():
            return
        time.sleep(0.1)
    raise AssertionError(f"OVS did not create {path}")


@pytest.fixture
def lab(private_ovs: PrivateOvs, libvirt_uri: str, short_dir: Path) -> Iterator[dict[str, Any]]:
    import libvirt

    require_root()
    tag = uuid.uuid4().hex[:6]
    short_dir.chmod(0o755)  # QEMU (not root) must reach the socket folder inside
    ports = OvsPorts(private_ovs, f"brau{tag}")
    conn = libvirt.open(libvirt_uri)
    names = {"a": f"vhp-au-a-{tag}", "b": f"vhp-au-b-{tag}"}
    pnames = {"a": f"vhuaua{tag}", "b": f"vhuaub{tag}"}
    try:
        for key in ("a", "b"):
            ports.add(pnames[key], "dpdkvhostuser")
        socks = {k: private_ovs.vhost_sock_dir / pnames[k] for k in pnames}
        for s in socks.values():
            wait_socket(s)
        conn.defineXML(domain_xml(names["a"], str(socks["a"]), "client"))
        conn.defineXML(domain_xml(names["b"], str(socks["b"]), "server"))
        yield {"ports": ports, "conn": conn, "names": names, "pnames": pnames, "socks": socks,
               "endpoint": private_ovs.endpoint, "sockdir": short_dir / "vs"}  # fmt: skip
    finally:
        for n in names.values():
            try:
                dom = conn.lookupByName(n)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        conn.close()
        ports.cleanup()


def findings_for(report: dict[str, Any], subject: str) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in report["findings"] if f["subject"] == subject}


def row_for(report: dict[str, Any], socket: str) -> dict[str, Any]:
    rows = [r for r in report["rows"] if r["socket"] == socket]
    assert len(rows) == 1, f"expected one row for {socket}, got {rows}"
    return rows[0]


def test_audit_then_migrate_to_server(lab: dict[str, Any], libvirt_uri: str) -> None:
    import libvirt

    ep, socks, names, pnames = lab["endpoint"], lab["socks"], lab["names"], lab["pnames"]
    base = ["--ovsdb", ep, "--libvirt-uri", libvirt_uri]

    # -- audit before: joined rows, deprecated ports, vm-b's mismatch, vm-a's mode right ------------------------
    rc, report, err = cli("audit", *base)
    assert report is not None, err
    assert rc == 1  # vm-b's mismatch is an error
    row_a = row_for(report, str(socks["a"]))
    assert row_a["port"]["name"] == pnames["a"] and row_a["port"]["type"] == "dpdkvhostuser"
    assert row_a["port"]["qemu_mode"] == "client"
    assert [(c["domain"], c["mode"], c["running"]) for c in row_a["consumers"]] == [(names["a"], "client", False)]
    assert row_a["file"]["exists"] is True and row_a["file"]["is_socket"] is True
    fa = findings_for(report, str(socks["a"]))
    assert fa["deprecated-port"] == "warning"
    assert "mode-mismatch" not in fa
    fb = findings_for(report, str(socks["b"]))
    assert fb["mode-mismatch"] == "error" and fb["deprecated-port"] == "warning"
    assert report["context"]["vhost_sock_dir"] == str(lab["ports"].ovs.vhost_sock_dir)

    # -- dry run: the plan, and nothing changes -------------------------------------------------------------------
    sockdir: Path = lab["sockdir"]
    mig = ["migrate-mode", "--to", "server", "--socket-dir", str(sockdir), "--group", GROUP, "--domain", names["a"]]
    rc, plan, err = cli(*mig, *base, "--dry-run")
    assert rc == 0, err
    assert plan["dry_run"] is True and plan["prepare"]["status"] == "planned"
    (dp,) = plan["domains"]
    new_path = str(sockdir / pnames["a"])
    assert dp["domain"] == names["a"] and dp["refused"] == ""
    assert dp["changes"] == [
        {
            "alias": "",
            "mac": "02:00:00:00:0a:01",
            "port": pnames["a"],
            "old_path": str(socks["a"]),
            "new_path": new_path,
        }
    ]
    assert [(s["action"], s["status"]) for s in dp["steps"]] == [("redefine", "planned"), ("retype-port", "planned")]
    assert not sockdir.exists()
    assert lab["ports"].interface(pnames["a"])["type"] == "dpdkvhostuser"

    # -- the real migration -------------------------------------------------------------------------------------
    rc, done, err = cli(*mig, *base)
    assert rc == 0, (done, err)
    assert done["prepare"]["status"] == "done"
    assert [(s["action"], s["status"]) for s in done["domains"][0]["steps"]] == [
        ("redefine", "done"),
        ("retype-port", "done"),
    ]
    xml = lab["conn"].lookupByName(names["a"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    src = etree.fromstring(xml.encode()).find("devices/interface[@type='vhostuser']/source")
    assert src is not None and (src.get("mode"), src.get("path")) == ("server", new_path)
    iface = lab["ports"].interface(pnames["a"])
    assert iface["type"] == "dpdkvhostuserclient"
    assert iface["options"]["vhost-server-path"] == new_path
    st = os.stat(sockdir)
    assert stat.S_IMODE(st.st_mode) == 0o2775 and st.st_gid == grp.getgrnam(GROUP).gr_gid
    # vm-b was not asked for: untouched
    xml_b = lab["conn"].lookupByName(names["b"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert str(socks["b"]) in xml_b and lab["ports"].interface(pnames["b"])["type"] == "dpdkvhostuser"

    # -- audit after: vm-a joined in server mode, no mismatch, socket to come when it starts -------------------
    rc, after, err = cli("audit", *base)
    assert after is not None, err
    row = row_for(after, new_path)
    assert row["port"]["type"] == "dpdkvhostuserclient" and row["port"]["qemu_mode"] == "server"
    assert [(c["domain"], c["mode"]) for c in row["consumers"]] == [(names["a"], "server")]
    fa = findings_for(after, new_path)
    assert "mode-mismatch" not in fa and "deprecated-port" not in fa
    assert fa.get("socket-missing") == "info"
    assert not [r for r in after["rows"] if r["socket"] == str(socks["a"])]

    # -- migrating again finds nothing to do --------------------------------------------------------------------
    rc, again, err = cli(*mig, *base)
    assert rc == 0, err
    assert again["domains"][0]["changes"] == [] and "nothing to migrate" in again["domains"][0]["notes"]


def test_audit_without_libvirt_is_a_warning(private_ovs: PrivateOvs) -> None:
    _, report, err = cli(
        "audit", "--ovsdb", private_ovs.endpoint, "--libvirt-uri", "qemu+unix:///system?socket=/nonexistent"
    )
    assert report is not None, err
    codes = {f["code"]: f["severity"] for f in report["findings"]}
    assert codes["libvirt-unavailable"] == "warning"


def test_audit_unreachable_ovsdb_is_an_error(short_dir: Path) -> None:
    rc, report, _ = cli("audit", "--ovsdb", f"unix:{short_dir}/none.sock", "--no-libvirt")
    assert rc == 1
    assert [f["code"] for f in report["findings"]] == ["ovsdb-unreachable"]


def test_force_running_domain_restarts_cold(lab: dict[str, Any], libvirt_uri: str) -> None:
    """A running client-mode VM: refused without --force-running; with it destroyed, redefined, retyped, started."""
    import libvirt

    ep, socks, names, pnames = lab["endpoint"], lab["socks"], lab["names"], lab["pnames"]
    base = ["--ovsdb", ep, "--libvirt-uri", libvirt_uri]
    # OVS (root) made the socket root-only; QEMU cannot connect and the audit says so
    rc, report, err = cli("audit", *base)
    assert report is not None, err
    assert findings_for(report, str(socks["a"])).get("no-access") == "error"
    socks["a"].chmod(0o777)
    dom = lab["conn"].lookupByName(names["a"])
    dom.create()
    assert dom.isActive()

    sockdir: Path = lab["sockdir"]
    mig = ["migrate-mode", "--to", "server", "--socket-dir", str(sockdir), "--group", GROUP, "--domain", names["a"]]
    rc, refused, err = cli(*mig, *base)
    assert rc == 1, err
    assert "is running" in refused["domains"][0]["refused"]
    assert dom.isActive() and lab["ports"].interface(pnames["a"])["type"] == "dpdkvhostuser"

    rc, done, err = cli(*mig, *base, "--force-running")
    assert rc == 0, (done, err)
    assert [(s["action"], s["status"]) for s in done["domains"][0]["steps"]] == [
        ("destroy", "done"),
        ("redefine", "done"),
        ("retype-port", "done"),
        ("start", "done"),
    ]
    dom = lab["conn"].lookupByName(names["a"])
    assert dom.isActive()
    new_path = sockdir / pnames["a"]
    live = etree.fromstring(dom.XMLDesc(0).encode()).find("devices/interface[@type='vhostuser']/source")
    assert live is not None and (live.get("mode"), live.get("path")) == ("server", str(new_path))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not new_path.is_socket():
        time.sleep(0.1)
    assert new_path.is_socket(), "QEMU did not create its server socket"
    assert new_path.stat().st_gid == grp.getgrnam(GROUP).gr_gid  # the setgid folder passed its group on

    rc, after, err = cli("audit", *base)
    assert after is not None, err
    row = row_for(after, str(new_path))
    assert [(c["domain"], c["mode"], c["running"]) for c in row["consumers"]] == [(names["a"], "server", True)]
    fa = findings_for(after, str(new_path))
    assert "mode-mismatch" not in fa and "socket-missing" not in fa and "no-access" not in fa
    dom.destroy()
    assert not dom.isActive()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefine()
