"""Kuryr / Neutron / os-vif input -> KuryrBinding: real-shaped inputs, every carrier, and every refusal."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from vhostplug.kuryr import (
    KuryrBinding,
    KuryrInputError,
    config_file_name,
    from_cni,
    from_neutron_port,
    from_vif,
    port_name_for,
    vifs_by_ifname,
)
from vhostplug.model import Mode

PORT_ID = "9c9cc8f5-88a1-4b1e-9f4c-1d2e3f405162"
PORT_ID2 = "28b691d4-0e11-4a3b-8c7d-6e5f40312233"


def neutron_port(**details: Any) -> dict[str, Any]:
    """A port as `openstack port show -f json` / the Neutron API returns it (trimmed)."""
    vif_details = {
        "port_filter": False,
        "datapath_type": "netdev",
        "vhostuser_socket": f"/var/lib/vhost_sockets/vhu{PORT_ID[:11]}",
        "vhostuser_mode": "server",
        "vhostuser_ovs_plug": True,
        "bridge_name": "br-int",
        "connectivity": "l2",
    }
    vif_details.update(details)
    return {
        "id": PORT_ID,
        "name": "",
        "network_id": "3b2a1c0d-0000-4000-8000-000000000001",
        "mac_address": "FA:16:3E:EF:B0:ED",
        "status": "ACTIVE",
        "binding:host_id": "compute-0",
        "binding:vnic_type": "normal",
        "binding:vif_type": "vhostuser",
        "binding:vif_details": {k: v for k, v in vif_details.items() if v is not None},
        "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
    }


def ovo(name: str, data: dict[str, Any], version: str = "1.0") -> dict[str, Any]:
    return {
        "versioned_object.name": name,
        "versioned_object.namespace": "os_vif",
        "versioned_object.version": version,
        "versioned_object.data": data,
        "versioned_object.changes": sorted(data),
    }


def vif_vhostuser(port_id: str = PORT_ID, mode: str = "server", **extra: Any) -> dict[str, Any]:
    """A VIFVHostUser as kuryr's neutron_to_osvif_vif_ovs builds it, serialized by obj_to_primitive()."""
    name = ("vhu" + port_id)[:14]
    data = {
        "id": port_id,
        "address": "fa:16:3e:ef:b0:ed",
        "active": True,
        "has_traffic_filtering": False,
        "preserve_on_delete": False,
        "plugin": "ovs",
        "vif_name": name,
        "path": f"/var/cni/vhostuser/{name}",
        "mode": mode,
        "network": ovo(
            "Network",
            {"id": "3b2a1c0d-0000-4000-8000-000000000001", "bridge": "br-int", "mtu": 1450, "multi_host": False,
             "should_provide_bridge": False, "should_provide_vlan": False, "label": "ns/pod-net",
             "subnets": ovo("SubnetList", {"objects": []})},
            "1.1",
        ),
        "port_profile": ovo(
            "VIFPortProfileOpenVSwitch", {"interface_id": port_id, "datapath_type": "netdev", "create_port": False},
            "1.2",
        ),
    }  # fmt: skip
    data.update(extra)
    return ovo("VIFVHostUser", data, "1.1")


def vif_ovs(port_id: str) -> dict[str, Any]:
    return ovo("VIFOpenVSwitch", {"id": port_id, "address": "fa:16:3e:00:00:01", "vif_name": "tap" + port_id[:11],
                                  "bridge_name": "br-int", "plugin": "ovs"})  # fmt: skip


def pod_state(default: dict[str, Any], **additional: dict[str, Any]) -> dict[str, Any]:
    return ovo("PodState", {"default_vif": default, "additional_vifs": additional})


# -- Neutron ---------------------------------------------------------------------------------------------------------


def test_neutron_server_mode_binding() -> None:
    b = from_neutron_port(neutron_port())
    assert b == KuryrBinding(
        port_id=PORT_ID,
        port_name="vhu9c9cc8f5-88",
        socket_name="vhu9c9cc8f5-88",
        mode=Mode.SERVER,
        mac="fa:16:3e:ef:b0:ed",
        bridge="br-int",
        datapath_type="netdev",
        iface_id=PORT_ID,
        mtu=None,
        mount_point="/var/cni/vhostuser",
        ovs_vhu_path="/var/run/openvswitch/",
        source="neutron",
    )
    assert b.ovs_type == "dpdkvhostuserclient"
    assert b.socket_path == "/var/cni/vhostuser/vhu9c9cc8f5-88"
    assert b.external_ids() == {"iface-id": PORT_ID, "iface-status": "active", "attached-mac": "fa:16:3e:ef:b0:ed"}


def test_neutron_client_mode_uses_the_ovs_socket_folder() -> None:
    port = neutron_port(vhostuser_mode="client", vhostuser_socket=f"/var/run/openvswitch/vhu{PORT_ID[:11]}")
    port["network"] = {"mtu": 9000}
    b = from_neutron_port(port, mount_point="/var/run/vhostuser")
    assert (b.mode, b.ovs_type, b.mtu) == (Mode.CLIENT, "dpdkvhostuser", 9000)
    assert b.socket_path == "/var/run/vhostuser/vhu9c9cc8f5-88"


@pytest.mark.parametrize(
    ("shape", "bridge"),
    [
        (lambda p: {"id": p["id"], "mac_address": p["mac_address"], "vif_type": "vhostuser",
                    "vif_details": p["binding:vif_details"]}, "br-int"),
        (lambda p: {"port_id": p["id"], "mac": p["mac_address"], "binding_vif_type": "vhostuser",
                    "binding_vif_details": {**p["binding:vif_details"], "bridge_name": "br-dpdk"}}, "br-dpdk"),
        (lambda p: {**p, "binding:vif_details": {k: v for k, v in p["binding:vif_details"].items()
                                                  if k not in ("bridge_name", "datapath_type")}}, "br-int"),
    ],
)  # fmt: skip
def test_neutron_key_spellings(shape: Any, bridge: str) -> None:
    b = from_neutron_port(shape(neutron_port()))
    assert (b.port_id, b.port_name, b.bridge, b.mac) == (PORT_ID, "vhu9c9cc8f5-88", bridge, "fa:16:3e:ef:b0:ed")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update({"binding:vif_type": "ovs"}), "vif_type is 'ovs', only 'vhostuser'"),
        (lambda p: p.update({"binding:vif_type": "binding_failed"}), "vif_type is 'binding_failed'"),
        (lambda p: p.pop("binding:vif_details"), "vif_details is missing"),
        (lambda p: p["binding:vif_details"].pop("vhostuser_socket"), "vhostuser_socket is missing"),
        (lambda p: p["binding:vif_details"].update(vhostuser_socket="relative/sock"), "must be an absolute path"),
        (lambda p: p["binding:vif_details"].update(vhostuser_socket="/" + "x" * 120), "longer than 107 bytes"),
        (lambda p: p["binding:vif_details"].update(vhostuser_socket="/a/../etc/x"), "must not contain '..'"),
        (lambda p: p["binding:vif_details"].update(vhostuser_mode="both"), "must be 'server' or 'client', not 'both'"),
        (lambda p: p["binding:vif_details"].pop("vhostuser_mode"), "vhostuser_mode must be"),
        (lambda p: p["binding:vif_details"].update(vhostuser_ovs_plug=False), "not plugged into OVS"),
        (lambda p: p["binding:vif_details"].update(vhostuser_vrouter_plug=True), "vhostuser_vrouter_plug is set"),
        (lambda p: p["binding:vif_details"].update(datapath_type="system"), "needs 'netdev'"),
        (lambda p: p["binding:vif_details"].update(bridge_name="br int"), "bridge_name 'br int' is not a plain name"),
        (lambda p: p.update(id="../../etc/passwd"), "is not a plain identifier"),
        (lambda p: p.update(id="abc/def"), "is not a plain identifier"),
        (lambda p: p.pop("id"), "the port has no id"),
        (lambda p: p.update(mac_address="fa:16:3e"), "is not of the form"),
        (lambda p: p.update(mtu="jumbo"), "MTU 'jumbo' is not a number"),
        (lambda p: p.update(mtu=10), "out of range"),
    ],
)
def test_neutron_refusals(mutate: Any, message: str) -> None:
    port = neutron_port()
    mutate(port)
    with pytest.raises(KuryrInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        from_neutron_port(port)


def test_neutron_port_not_an_object() -> None:
    with pytest.raises(KuryrInputError, match="must be a JSON object"):
        from_neutron_port(["nope"])


# -- os-vif ----------------------------------------------------------------------------------------------------------


def test_os_vif_vhostuser_primitive() -> None:
    b = from_vif(vif_vhostuser(mode="client"))
    assert (b.port_id, b.port_name, b.socket_name) == (PORT_ID, "vhu9c9cc8f5-88", "vhu9c9cc8f5-88")
    assert (b.mode, b.ovs_type, b.mtu, b.bridge, b.datapath_type) == (Mode.CLIENT, "dpdkvhostuser", 1450, "br-int",
                                                                       "netdev")  # fmt: skip
    assert (b.mount_point, b.ovs_vhu_path, b.source) == ("/var/cni/vhostuser", "/var/run/openvswitch/", "os-vif")


def test_os_vif_profile_interface_id_and_minimal_vif() -> None:
    vif = vif_vhostuser()
    vif["versioned_object.data"]["port_profile"]["versioned_object.data"]["interface_id"] = PORT_ID2
    assert from_vif(vif).iface_id == PORT_ID2
    minimal = ovo("VIFVHostUser", {"id": PORT_ID, "path": "/run/vhu/sock0", "mode": "server"})
    b = from_vif(minimal)
    assert (b.bridge, b.mount_point, b.socket_name, b.iface_id, b.mac) == ("br-int", "/run/vhu", "sock0", PORT_ID, "")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v: v.update({"versioned_object.name": "VIFOpenVSwitch"}), "is a 'VIFOpenVSwitch', expected VIFVHostUser"),
        (lambda v: v.update({"versioned_object.namespace": "nova"}), "namespace 'nova' is not 'os_vif'"),
        (lambda v: v.update({"versioned_object.version": "2.0"}), "version 2.0 of VIFVHostUser is not supported"),
        (lambda v: v.pop("versioned_object.data"), "not an oslo.versionedobjects primitive"),
        (lambda v: v["versioned_object.data"].pop("path"), "path \\(the vhost-user socket\\) is missing"),
        (lambda v: v["versioned_object.data"].update(mode="listen"), "mode must be 'server' or 'client'"),
        (lambda v: v["versioned_object.data"].update(plugin="vrouter"), "plugin 'vrouter' is not supported"),
        (lambda v: v["versioned_object.data"].update(id="a/b"), "is not a plain identifier"),
        (lambda v: v["versioned_object.data"]["port_profile"]["versioned_object.data"].update(datapath_type="system"),
         "needs 'netdev'"),
        (lambda v: v["versioned_object.data"].update(network={"bridge": "br-x"}), "network is not an oslo"),
    ],
)  # fmt: skip
def test_os_vif_refusals(mutate: Any, message: str) -> None:
    vif = vif_vhostuser()
    mutate(vif)
    with pytest.raises(KuryrInputError, match=message):
        from_vif(vif)


# -- carriers --------------------------------------------------------------------------------------------------------


def test_carriers_pod_state_old_dict_and_kuryrport() -> None:
    vhu = vif_vhostuser(PORT_ID2)
    state = pod_state(vif_ovs(PORT_ID), net1=vhu)
    assert list(vifs_by_ifname(state)) == ["eth0", "net1"]
    assert list(vifs_by_ifname(json.dumps({"eth0": vhu}))) == ["eth0"]
    assert vifs_by_ifname({"eth0": {"default": True, "vif": vhu}})["eth0"] is vhu
    assert list(vifs_by_ifname(vhu)) == ["eth0"]
    with pytest.raises(KuryrInputError, match="not valid JSON"):
        vifs_by_ifname("{broken")
    with pytest.raises(KuryrInputError, match="entry for 'eth0' is not an os-vif VIF"):
        vifs_by_ifname({"eth0": {"id": PORT_ID}})


CASES: list[tuple[str, dict[str, Any], dict[str, str], str | None, str | None]] = [
    # (id, netconf, cni_args, ifname, expected port id or None)
    ("nothing", {"cniVersion": "1.0.0", "type": "vhostplug"}, {"K8S_POD_NAME": "p"}, None, None),
    ("kuryr.vif primitive", {"kuryr": {"vif": vif_vhostuser()}}, {}, None, PORT_ID),
    ("kuryr.vif PodState by ifname", {"kuryr": {"vif": pod_state(vif_ovs(PORT_ID), net1=vif_vhostuser(PORT_ID2))}},
     {}, "net1", PORT_ID2),
    ("kuryr.vif PodState picks the only vhostuser", {"kuryr": {"vif": pod_state(vif_ovs(PORT_ID),
                                                                             net1=vif_vhostuser(PORT_ID2))}},
     {}, None, PORT_ID2),
    ("kuryr.vif JSON text", {"kuryr": {"vif": json.dumps({"eth0": vif_vhostuser()})}}, {}, "eth0", PORT_ID),
    ("kuryr.neutronPortBinding", {"kuryr": {"neutronPortBinding": neutron_port()}}, {}, None, PORT_ID),
    ("osVif", {"osVif": vif_vhostuser(PORT_ID2)}, {}, None, PORT_ID2),
    ("neutronPort", {"neutronPort": neutron_port()}, {}, None, PORT_ID),
    ("args.cni.kuryrVif", {"args": {"cni": {"kuryrVif": vif_vhostuser()}}}, {}, None, PORT_ID),
    ("CNI_ARGS KURYR_VIF", {}, {"KURYR_VIF": json.dumps(vif_vhostuser(PORT_ID2))}, None, PORT_ID2),
    ("CNI_ARGS KURYR_NEUTRON_PORT", {}, {"KURYR_NEUTRON_PORT": json.dumps(neutron_port())}, None, PORT_ID),
    ("netconf wins over CNI_ARGS", {"osVif": vif_vhostuser(PORT_ID)},
     {"KURYR_VIF": json.dumps(vif_vhostuser(PORT_ID2))}, None, PORT_ID),
]  # fmt: skip


@pytest.mark.parametrize(
    ("netconf", "cni_args", "ifname", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_from_cni_carriers(
    netconf: dict[str, Any], cni_args: dict[str, str], ifname: str | None, expected: str | None
) -> None:
    before = copy.deepcopy(netconf)
    b = from_cni(netconf, cni_args, ifname)
    assert (b.port_id if b else None) == expected
    assert netconf == before  # pure: the input is not changed


def test_from_cni_settings() -> None:
    netconf = {"kuryr": {"neutronPortBinding": neutron_port(bridge_name=None), "mountPoint": "/var/run/vhostuser",
                         "ovsVhuPath": "/run/ovs/", "bridge": "br-vhu"}}  # fmt: skip
    b = from_cni(netconf, {})
    assert b is not None
    assert (b.mount_point, b.ovs_vhu_path, b.bridge) == ("/var/run/vhostuser", "/run/ovs/", "br-vhu")
    netconf = {"kuryr": {"vif": vif_vhostuser(), "mountPoint": "/var/run/vhostuser"}}
    b = from_cni(netconf, {})
    assert b is not None and b.socket_path == "/var/run/vhostuser/vhu9c9cc8f5-88"


@pytest.mark.parametrize(
    ("netconf", "cni_args", "ifname", "message"),
    [
        ({"kuryr": "yes"}, {}, None, "'kuryr' must be an object"),
        ({"kuryr": {"vif": vif_vhostuser(), "neutronPortBinding": neutron_port()}}, {}, None, "give only one"),
        ({"kuryr": {"vif": vif_vhostuser(), "mountPoint": "rel"}}, {}, None, "kuryr.mountPoint 'rel' is not valid"),
        ({"kuryr": {"vif": pod_state(vif_ovs(PORT_ID))}}, {}, None, "holds 0 VIFVHostUser VIFs"),
        ({"kuryr": {"vif": pod_state(vif_vhostuser(), net1=vif_vhostuser(PORT_ID2))}}, {}, None, "holds 2"),
        ({"kuryr": {"vif": pod_state(vif_vhostuser())}}, {}, "net7", "has no VIF for 'net7'"),
        ({"kuryr": {"vif": pod_state(vif_ovs(PORT_ID))}}, {}, "eth0", "is a 'VIFOpenVSwitch'"),
        ({}, {"KURYR_NEUTRON_PORT": "{not json"}, None, "CNI_ARGS: the Neutron port is not valid JSON"),
        ({"neutronPort": neutron_port(vhostuser_socket=None)}, {}, None, "netconf: Neutron port .* is missing"),
    ],
)
def test_from_cni_refusals(netconf: dict[str, Any], cni_args: dict[str, str], ifname: str | None, message: str) -> None:
    with pytest.raises(KuryrInputError, match=message):
        from_cni(netconf, cni_args, ifname)


# -- names and the attachment ----------------------------------------------------------------------------------------


def test_names_and_config_file() -> None:
    assert port_name_for(PORT_ID) == "vhu9c9cc8f5-88"
    assert port_name_for("ab") == "vhuab"
    assert config_file_name("c" * 64, "net1") == "c" * 64 + "-net1"
    for bad in (("a/b", "eth0"), ("cid", "../x"), ("", "eth0")):
        with pytest.raises(KuryrInputError):
            config_file_name(*bad)


def test_to_attachment() -> None:
    b = from_vif(vif_vhostuser())
    att = b.to_attachment("c" * 64, "net1", device_id="dev-1")
    assert att.port_name == "vhu9c9cc8f5-88"
    assert att.socket_path == Path("/var/cni/vhostuser/vhu9c9cc8f5-88")
    assert (att.mode, att.bridge, att.mtu, att.iface_id, att.mac) == (Mode.SERVER, "br-int", 1450, PORT_ID,
                                                                       "fa:16:3e:ef:b0:ed")  # fmt: skip
    ids = att.external_ids()
    assert ids["iface-id"] == PORT_ID and ids["kuryr-port-id"] == PORT_ID and ids["attached-mac"] == b.mac
