"""The DRA kubelet plugin through its real protocol: a kubelet stand-in registers over the plugin watcher's gRPC
and calls NodePrepareResources / NodeUnprepareResources on the agent's socket; claims come from the stand-in
kube-apiserver over HTTPS; ports are checked in the private OVS-DPDK; files on disk."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

from tests.functional.dra.conftest import BRIDGE, NODE
from vhostplug import ovsvhost
from vhostplug.dra.config import DRIVER_NAME
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.drakubelet import Claim, DraKubelet
from vhostplug.podinfo import devicemetadata
from vhostplug_testsupport import draobjects
from vhostplug_testsupport.cniagent import AgentProc

API = "resource.k8s.io/v1"


def _root(agent: AgentProc) -> Path:
    root: Path = agent.dra_root  # type: ignore[attr-defined]
    return root


def _seed(api: ApiServer, obj: dict[str, Any]) -> Claim:
    stored = api.put(obj)
    meta = stored["metadata"]
    return Claim(meta["namespace"], meta["name"], meta["uid"])


def _status_devices(api: ApiServer, c: Claim) -> list[dict[str, Any]]:
    obj = api.get(API, "ResourceClaim", c.name, c.namespace)
    assert obj is not None
    return list((obj.get("status") or {}).get("devices") or [])


def _dra_ports(agent: AgentProc) -> dict[str, Any]:
    assert agent.dataplane is not None
    return {p.name: p for p in agent.dataplane.list_ports() if ovsvhost.ID_DRA_CLAIM in p.external_ids}


def _leftovers(agent: AgentProc, c: Claim) -> list[str]:
    root = _root(agent)
    out = [n for n, p in _dra_ports(agent).items() if p.external_ids[ovsvhost.ID_DRA_CLAIM] == c.uid]
    out += [str(p) for p in (root / "cdi").glob(f"*{c.uid}*")]
    meta = root / "plugins" / DRIVER_NAME / "dra-device-metadata" / f"{c.namespace}_{c.name}"
    out += [str(meta)] if meta.exists() else []
    out += [str(p) for p in (agent.root / "state" / "dra").glob(f"{c.uid}*")]
    return out


def test_registration_names_the_driver_its_endpoint_and_both_services(
    dra_agent: AgentProc, kubelet: DraKubelet
) -> None:
    info = kubelet.info
    root = _root(dra_agent)
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER_NAME
    assert info.endpoint == str(root / "plugins" / DRIVER_NAME / "dra.sock")
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    assert kubelet.version == "v1.DRAPlugin"
    for sock in (Path(info.endpoint), root / "plugins_registry" / f"{DRIVER_NAME}-reg.sock"):
        st = os.lstat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, sock


def test_prepare_makes_port_folder_cdi_metadata_and_status_and_unprepare_removes_them(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    params = {
        "apiVersion": "vhostplug.io/v1alpha1",
        "kind": "VhostUserConfig",
        "mtu": 9000,
        "vlan": 100,
        "queues": 2,
        "ingressPolicing": {"rateKbps": 100000, "burstKb": 10000},
    }
    obj = draobjects.claim("vm-a-net1-x7k2p", NODE, [("vhost", "vhu-br-dra-0")], params=params, pod_claim_name="net1")
    c = _seed(apiserver, obj)
    resp = kubelet.prepare([c])
    entry = resp.claims[c.uid]
    assert entry.error == ""
    [dev] = entry.devices
    assert (list(dev.request_names), dev.pool_name, dev.device_name) == (["vhost"], NODE, "vhu-br-dra-0")
    assert list(dev.cdi_device_ids) == [f"vhostplug.io/vhostuser={c.uid}-vhost"]
    container_dir = "/var/run/vhostplug/dra/resourceclaimtemplates/net1/vhost"

    # the port, in OVS, with the claim's options
    [port] = [p for p in _dra_ports(dra_agent).values() if p.external_ids[ovsvhost.ID_DRA_CLAIM] == c.uid]
    assert port.bridge == BRIDGE and port.ovs_type == ovsvhost.TYPE_OVS_CLIENT and port.ofport
    assert (port.mtu, port.vlan) == (9000, 100)
    assert (port.ingress_policing_rate, port.ingress_policing_burst) == (100000, 10000)
    host_dir = Path(port.socket_path).parent
    assert port.socket_path == f"{host_dir}/vhu.sock" and host_dir.parent == dra_agent.socket_root
    assert stat.S_ISDIR(os.lstat(host_dir).st_mode)

    # the CDI spec: the folder at the stable container path, the metadata file read-only
    [spec_file] = list((_root(dra_agent) / "cdi").glob(f"*{c.uid}*"))
    spec = json.loads(spec_file.read_text())
    assert spec["kind"] == "vhostplug.io/vhostuser" and spec["cdiVersion"] == "0.6.0"
    [cdev] = spec["devices"]
    assert cdev["name"] == f"{c.uid}-vhost"
    mounts = {m["containerPath"]: m for m in cdev["containerEdits"]["mounts"]}
    assert mounts[container_dir]["hostPath"] == str(host_dir)
    meta_path = f"{devicemetadata.CONTAINER_ROOT}/resourceclaimtemplates/net1/vhost/{DRIVER_NAME}-metadata.json"
    assert "ro" in mounts[meta_path]["options"]

    # KEP-5304 metadata, read as KubeVirt's side reads it
    meta = devicemetadata.decode(Path(mounts[meta_path]["hostPath"]).read_text())
    assert meta is not None and meta.pod_claim_name == "net1" and meta.uid == c.uid
    vu = devicemetadata.vhost_user(meta, "vhost", DRIVER_NAME)
    assert (vu.path, vu.mtu, vu.mode) == (f"{container_dir}/vhu.sock", 9000, "server")

    # KEP-4817 status
    [st] = _status_devices(apiserver, c)
    assert (st["driver"], st["pool"], st["device"]) == (DRIVER_NAME, NODE, "vhu-br-dra-0")
    assert st["data"]["containerSocket"] == f"{container_dir}/vhu.sock"
    assert st["data"]["hostSocket"] == port.socket_path
    assert st["networkData"] == {"interfaceName": port.name, "hardwareAddress": port.external_ids["attached-mac"]}

    # kubelet repeats Prepare: the same answer, nothing made twice
    again = kubelet.prepare([c]).claims[c.uid]
    assert again.error == "" and list(again.devices[0].cdi_device_ids) == list(dev.cdi_device_ids)
    assert len([p for p in _dra_ports(dra_agent).values() if p.external_ids[ovsvhost.ID_DRA_CLAIM] == c.uid]) == 1

    assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert _leftovers(dra_agent, c) == []
    assert not host_dir.exists()
    assert _status_devices(apiserver, c) == []
    # and once more, and for a claim never prepared here
    never = Claim("default", "never-seen", str(uuid.uuid4()))
    resp2 = kubelet.unprepare([c, never])
    assert resp2.claims[c.uid].error == "" and resp2.claims[never.uid].error == ""


def test_claims_from_one_template_get_one_container_path(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    """A migration's source and target virt-launchers: two claims from one template, one pod claim name."""
    a = _seed(apiserver, draobjects.claim("launcher-a-net", NODE, [("vhost", "vhu-br-dra-1")], pod_claim_name="net2"))
    b = _seed(apiserver, draobjects.claim("launcher-b-net", NODE, [("vhost", "vhu-br-dra-2")], pod_claim_name="net2"))
    resp = kubelet.prepare([a, b])
    assert resp.claims[a.uid].error == "" and resp.claims[b.uid].error == ""
    sa, sb = _status_devices(apiserver, a)[0]["data"], _status_devices(apiserver, b)[0]["data"]
    assert (
        sa["containerSocket"]
        == sb["containerSocket"]
        == "/var/run/vhostplug/dra/resourceclaimtemplates/net2/vhost/vhu.sock"
    )
    assert sa["hostSocket"] != sb["hostSocket"]
    resp2 = kubelet.unprepare([a, b])
    assert resp2.claims[a.uid].error == resp2.claims[b.uid].error == ""
    assert _leftovers(dra_agent, a) == _leftovers(dra_agent, b) == []


def test_bad_claims_get_an_error_each_and_leave_nothing_while_a_good_one_is_prepared(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    good = _seed(apiserver, draobjects.claim("good", NODE, [("vhost", "vhu-br-dra-3")]))
    cases = {
        "unknown key": (
            draobjects.claim("bad-key", NODE, [("vhost", "vhu-br-dra-4")], params={"mtu": 1500, "colour": 1}),
            "colour: unknown key",
        ),
        "bad value": (draobjects.claim("bad-vlan", NODE, [("vhost", "vhu-br-dra-5")], params={"vlan": 5000}), "vlan"),
        "another driver": (
            draobjects.claim("other", NODE, [("gpu", "gpu-0")], driver="gpu.example.com"),
            f"no device of driver {DRIVER_NAME}",
        ),
        "no allocation": (
            draobjects.claim("pending", NODE, [("vhost", "vhu-br-dra-6")], allocated=False),
            "is not allocated",
        ),
        "another node": (
            draobjects.claim("elsewhere", "node-b", [("vhost", "vhu-br-dra-7")]),
            "allocated to another node",
        ),
        "not published": (
            draobjects.claim("ghost", NODE, [("vhost", "vhu-br-dra-999")]),
            f"device {NODE}/vhu-br-dra-999 is not a device of driver {DRIVER_NAME} on node {NODE}",
        ),
    }
    seeded = {what: _seed(apiserver, obj) for what, (obj, _) in cases.items()}
    missing = Claim("default", "no-such-claim", str(uuid.uuid4()))
    stale = Claim("default", "good", str(uuid.uuid4()))  # recreated under another UID
    resp = kubelet.prepare([good, *seeded.values(), missing, stale])
    assert resp.claims[good.uid].error == ""
    for what, c in seeded.items():
        err = resp.claims[c.uid].error
        assert cases[what][1] in err and c.name in err, (what, err)
        assert _leftovers(dra_agent, c) == [], what
        assert _status_devices(apiserver, c) == [], what
    assert "404" in resp.claims[missing.uid].error and "no-such-claim" in resp.claims[missing.uid].error
    assert "kubelet asked for" in resp.claims[stale.uid].error
    assert kubelet.unprepare([good]).claims[good.uid].error == ""
    assert _leftovers(dra_agent, good) == []


def test_a_failed_status_write_rolls_the_claim_back(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    c = _seed(apiserver, draobjects.claim("status-fails", NODE, [("vhost", "vhu-br-dra-8")]))
    apiserver.fail("PUT", f"/apis/{API}/namespaces/default/resourceclaims/status-fails/status", 500)
    err = kubelet.prepare([c]).claims[c.uid].error
    assert "status-fails" in err and "500" in err
    assert _leftovers(dra_agent, c) == []
    assert list(dra_agent.socket_root.glob("dra-*")) == []
    # the next Prepare (kubelet retries) succeeds
    assert kubelet.prepare([c]).claims[c.uid].error == ""
    assert kubelet.unprepare([c]).claims[c.uid].error == ""


def test_v1beta1_service_answers_too(dra_agent: AgentProc, apiserver: ApiServer) -> None:
    old = DraKubelet(_root(dra_agent) / "plugins_registry", prefer="v1beta1.DRAPlugin")
    try:
        old.register()
        assert old.version == "v1beta1.DRAPlugin"
        c = _seed(apiserver, draobjects.claim("beta", NODE, [("vhost", "vhu-br-dra-9")]))
        entry = old.prepare([c]).claims[c.uid]
        assert entry.error == "" and list(entry.devices[0].cdi_device_ids) == [f"vhostplug.io/vhostuser={c.uid}-vhost"]
        assert old.unprepare([c]).claims[c.uid].error == ""
        assert _leftovers(dra_agent, c) == []
    finally:
        old.close()


def test_client_mode_moves_the_socket_ovs_made_into_the_claims_folder(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    """mode client: OVS (dpdkvhostuser) makes the socket in its own folder; Prepare moves it into the claim's folder
    before it answers, so the app finds it at the container path when it starts."""
    c = _seed(apiserver, draobjects.claim("client-mode", NODE, [("vhost", "vhu-br-dra-14")], params={"mode": "client"}))
    assert kubelet.prepare([c]).claims[c.uid].error == ""
    [port] = [p for p in _dra_ports(dra_agent).values() if p.external_ids[ovsvhost.ID_DRA_CLAIM] == c.uid]
    assert port.ovs_type == ovsvhost.TYPE_OVS_SERVER
    [st] = _status_devices(apiserver, c)
    sock = Path(st["data"]["hostSocket"])
    assert stat.S_ISSOCK(os.lstat(sock).st_mode), sock
    assert st["data"]["mode"] == "client"
    assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert _leftovers(dra_agent, c) == [] and not sock.parent.exists()


def test_unprepare_removes_everything_even_when_the_api_server_fails(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    """Taking our status.devices entries out is best effort: a pod must not stay stuck on the API server."""
    c = _seed(apiserver, draobjects.claim("api-down", NODE, [("vhost", "vhu-br-dra-15")]))
    assert kubelet.prepare([c]).claims[c.uid].error == ""
    apiserver.fail("GET", f"/apis/{API}/namespaces/default/resourceclaims/api-down", 503)
    assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert _leftovers(dra_agent, c) == []
