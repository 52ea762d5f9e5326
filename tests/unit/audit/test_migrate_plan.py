"""Migration plans and domain XML rewrites, pure (no libvirt, no OVS)."""

from __future__ import annotations

import grp
import os
from pathlib import Path

from lxml import etree

from vhostplug.audit.domains import flip_to_server, interfaces_of
from vhostplug.audit.migrate import DomainState, plan
from vhostplug.audit.ovs import OvsVhostPort

GROUP = grp.getgrgid(os.getgid()).gr_name

XML = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vm1</name>
  <devices>
    <interface type='vhostuser'>
      <mac address='fa:16:3e:4b:ea:c4'/>
      <source type='unix' path='/var/run/openvswitch/vhu1879c31a-fa' mode='client'/>
      <model type='virtio'/>
      <alias name='net0'/>
    </interface>
    <interface type='vhostuser'>
      <mac address='fa:16:3e:4b:ea:c5'/>
      <source type='unix' path='/var/lib/vhost_sockets/vhu28b691d4-0e' mode='server'/>
      <alias name='net1'/>
    </interface>
    <interface type='vhostuser'>
      <mac address='fa:16:3e:4b:ea:c6'/>
      <source type='unix' path='/elsewhere/sock'/>
      <alias name='net2'/>
    </interface>
    <interface type='network'><source network='default'/></interface>
  </devices>
  <qemu:commandline><qemu:arg value='-nodefaults'/></qemu:commandline>
</domain>"""

PORT = OvsVhostPort("vhu1879c31a-fa", "br-int", "dpdkvhostuser", "/var/run/openvswitch/vhu1879c31a-fa")


def test_interfaces_of_reads_modes_with_libvirt_default() -> None:
    ifaces = interfaces_of(XML)
    assert [(i.alias, i.mode, i.path) for i in ifaces] == [
        ("net0", "client", "/var/run/openvswitch/vhu1879c31a-fa"),
        ("net1", "server", "/var/lib/vhost_sockets/vhu28b691d4-0e"),
        ("net2", "client", "/elsewhere/sock"),
    ]
    assert ifaces[0].domain == "vm1"


def test_flip_to_server_changes_only_mapped_interfaces_and_keeps_namespaces() -> None:
    new, changed = flip_to_server(XML, {"/var/run/openvswitch/vhu1879c31a-fa": "/var/lib/vhost_sockets/vhu1879c31a-fa"})
    assert changed == [("/var/run/openvswitch/vhu1879c31a-fa", "/var/lib/vhost_sockets/vhu1879c31a-fa")]
    root = etree.fromstring(new.encode())
    src = root.find("devices/interface/source")
    assert src is not None
    assert (src.get("mode"), src.get("path"), src.get("type")) == ("server", "/var/lib/vhost_sockets/vhu1879c31a-fa",
                                                                   "unix")  # fmt: skip
    assert [i.mode for i in interfaces_of(new)] == ["server", "server", "client"]
    assert "xmlns:qemu=" in new and '<qemu:arg value="-nodefaults"/>' in new


def test_plan_for_a_stopped_domain(tmp_path: Path) -> None:
    mp = plan([DomainState("vm1", False, True, XML)], [PORT], socket_dir=tmp_path, group=GROUP)
    assert mp.prepare.status == "planned"
    (d,) = mp.domains
    assert d.refused == ""
    assert [(c.port, c.new_path) for c in d.changes] == [("vhu1879c31a-fa", f"{tmp_path}/vhu1879c31a-fa")]
    assert [s.action for s in d.steps] == ["redefine", "retype-port"]
    assert any("already mode='server'" in n for n in d.notes)
    assert any("no dpdkvhostuser port serves /elsewhere/sock" in n for n in d.notes)
    assert not mp.failed


def test_plan_refuses_running_unless_forced(tmp_path: Path) -> None:
    mp = plan([DomainState("vm1", True, True, XML)], [PORT], socket_dir=tmp_path, group=GROUP)
    assert "is running" in mp.domains[0].refused and mp.failed
    assert {s.status for s in mp.domains[0].steps} == {"skipped"}
    mp = plan([DomainState("vm1", True, True, XML)], [PORT], socket_dir=tmp_path, group=GROUP, force_running=True)
    assert [s.action for s in mp.domains[0].steps] == ["destroy", "redefine", "retype-port", "start"]
    assert not mp.failed


def test_plan_refusals_and_filters(tmp_path: Path) -> None:
    mp = plan([DomainState("vm1", False, False, XML)], [PORT], socket_dir=tmp_path, group=GROUP)
    assert "transient" in mp.domains[0].refused
    mp = plan([DomainState("vm1", False, True, XML)], [PORT], socket_dir=Path("/" + "x" * 100), group=GROUP)
    assert "longer than 107 bytes" in mp.domains[0].refused
    mp = plan([DomainState("vm1", False, True, XML)], [PORT], socket_dir=tmp_path, group="no-such-group-vhp")
    assert mp.prepare.status == "failed" and "does not exist" in mp.prepare.error and mp.failed
    mp = plan([DomainState("vm1", False, True, XML)], [PORT], socket_dir=tmp_path, group=GROUP, only=["vm9"])
    assert [d.refused for d in mp.domains] == ["no domain named 'vm9'"]
    other = "<domain><name>plain</name><devices/></domain>"
    mp = plan([DomainState("plain", False, True, other)], [PORT], socket_dir=tmp_path, group=GROUP)
    assert mp.domains == []
