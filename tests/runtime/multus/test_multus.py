"""The real Multus 4.0.x thin plugin drives vhostplug as on a node (see conftest.py): NADs as shipped and as found
in the wild (cniVersion 0.3.1, 1.0.0), two interfaces from one NAD, DEL twice and without a network namespace, a
failed ADD rolled back by Multus, and the network-status annotation Multus writes (in Kubernetes protobuf) carrying
our device-info."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from tests.conftest import REPO
from tests.runtime.multus.conftest import NAMESPACE, MultusNode, Pod
from vhostplug.lab.apiserver_proto import CONTENT_TYPE
from vhostplug.lab.podresources.v1 import api_pb2 as pr
from vhostplug.lab.podresources.v1 import api_pb2_grpc as pr_grpc
from vhostplug.model import port_name_for

CAPS = {"deviceID": True, "CNIDeviceInfoFile": True}


def _deploy_nad() -> tuple[str, dict[str, Any]]:
    """The NetworkAttachmentDefinition of deploy/node, as shipped."""
    for doc in yaml.safe_load_all((REPO / "deploy/node/vhostplug-node.yaml").read_text()):
        if doc and doc.get("kind") == "NetworkAttachmentDefinition":
            return str(doc["metadata"]["name"]), json.loads(doc["spec"]["config"])
    raise AssertionError("deploy/node has no NetworkAttachmentDefinition")


def _nad(version: str, subnet: str) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "type": "vhostplug",
        "bridge": "br-cni",
        "capabilities": CAPS,
        "ipam": {"type": "host-local", "subnet": subnet},
    }


def _ours(status: list[dict[str, Any]], nad: str) -> list[dict[str, Any]]:
    return [e for e in status if e["name"] == f"{NAMESPACE}/{nad}"]


def _check_attached(node: MultusNode, pod: Pod, nad: str, ifnames: list[str]) -> list[dict[str, Any]]:
    """Each interface's port uses the device PodResources reported for the pod, in order, and network-status (written
    by Multus in protobuf) carries its MAC and our device-info with the device's container-side socket path."""
    status = node.network_status(pod)
    assert status is not None, "Multus wrote no network-status"
    ours = _ours(status, nad)
    assert [e["interface"] for e in ours] == ifnames
    assert [e["interface"] for e in status if e.get("default")] == ["eth0"]
    for entry, ifname, device in zip(ours, ifnames, pod.devices, strict=True):
        port = node.agent.dataplane.get_port(port_name_for(pod.container_id, ifname))  # type: ignore[union-attr]
        assert port is not None, f"no OVS port for {ifname}"
        assert port.external_ids["vhostplug-device-id"] == device
        assert port.socket_path == str(node.agent.socket_root / device / "vhu.sock")
        assert entry["mac"] == port.external_ids["attached-mac"]
        assert entry["device-info"] == {
            "type": "vhost-user",
            "version": "1.1.0",
            "vhost-user": {"mode": "server", "path": f"/var/run/vhostplug/{device}/vhu.sock"},
        }
        assert entry["ips"] and all(not ip.startswith("10.81.") for ip in entry["ips"])
    status_writes = [r for r in node.api.requests if r.method == "PUT" and r.path.endswith(f"/pods/{pod.name}/status")]
    assert status_writes and {r.content_type for r in status_writes} == {CONTENT_TYPE}
    return ours


def _del_twice(node: MultusNode, pod: Pod, netns: bool = True) -> None:
    for _ in range(2):
        r = node.run("DEL", pod, netns=netns)
        assert r.code == 0, r.stdout + r.stderr
    assert node.leftovers(pod) == []


def test_the_deploy_node_nad_as_shipped(multus_node: MultusNode) -> None:
    name, config = _deploy_nad()
    multus_node.nad(name, config)
    pod = multus_node.pod(name, 1)
    r = multus_node.run("ADD", pod)
    assert r.code == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)  # the cluster network's result, in the thin plugin's version
    assert result["cniVersion"] == "0.3.1" and result["ips"][0]["address"].startswith("10.81.")
    _check_attached(multus_node, pod, name, ["net1"])
    port = multus_node.agent.dataplane.get_port(port_name_for(pod.container_id, "net1"))  # type: ignore[union-attr]
    assert port is not None and port.mtu == config["mtu"]
    # what the lab's Multus step plays (lab/multus.py), as this Multus really did it (its debug log of the delegate
    # call): the device top-level, as pciBusID and in runtimeConfig with the file it named; IgnoreUnknown twice
    device, log = pod.devices[0], (multus_node.root / "multus.log").read_text()
    assert f'"deviceID":"{device}"' in log and f'"pciBusID":"{device}"' in log
    assert f"_net1 deviceID:{device}]" in log and "[[IgnoreUnknown true] [K8S_POD_NAMESPACE default]" in log
    assert "[IgnoreUnknown 1] [K8S_POD_NAMESPACE default]" in log
    # the device-info file Multus named for us, with our content; Multus reads it back into network-status
    assert multus_node.cni_devinfo_files(pod) == [f"{NAMESPACE}-{name}-{pod.container_id}_net1"]
    _del_twice(multus_node, pod)
    multus_node.release(pod)


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
def test_nad_cni_versions_and_del_without_netns(multus_node: MultusNode, version: str) -> None:
    nad = f"vhu-{version.replace('.', '')}"
    multus_node.nad(nad, _nad(version, "10.83.0.0/24"))
    pod = multus_node.pod(nad, 1)
    r = multus_node.run("ADD", pod)
    assert r.code == 0, r.stdout + r.stderr
    _check_attached(multus_node, pod, nad, ["net1"])
    log = (multus_node.root / "multus.log").read_text()
    assert f'"cniVersion":"{version}","interfaces":[{{"name":"net1"' in log, "our result was not in the NAD's version"
    _del_twice(multus_node, pod, netns=False)  # the sandbox's netns is gone: DEL still removes everything
    multus_node.release(pod)


def test_two_interfaces_from_one_nad_get_two_devices(multus_node: MultusNode) -> None:
    multus_node.nad("vhu-two", _nad("0.3.1", "10.84.0.0/24"))
    pod = multus_node.pod("vhu-two,vhu-two", 2)
    # the lab kubelet's PodResources knows the pod's two devices (Get) among the healthy ones (GetAllocatableResources)
    with grpc.insecure_channel(f"unix:{multus_node.pod_resources_dir / 'kubelet.sock'}") as channel:
        stub = pr_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
        got = stub.Get(pr.GetPodResourcesRequest(pod_name=pod.name, pod_namespace=NAMESPACE), timeout=5)
        alloc = stub.GetAllocatableResources(pr.AllocatableResourcesRequest(), timeout=5)
    assert [list(d.device_ids) for d in got.pod_resources.containers[0].devices] == [pod.devices]
    allocatable = {r.resource_name: set(r.device_ids) for r in alloc.devices}
    assert set(pod.devices) < allocatable["vhostplug.io/vhostuser"]
    r = multus_node.run("ADD", pod)
    assert r.code == 0, r.stdout + r.stderr
    ours = _check_attached(multus_node, pod, "vhu-two", ["net1", "net2"])
    assert len({e["device-info"]["vhost-user"]["path"] for e in ours}) == 2
    assert len(multus_node.cni_devinfo_files(pod)) == 2
    _del_twice(multus_node, pod)
    multus_node.release(pod)


def test_a_failed_add_is_rolled_back_by_multus_and_leaves_nothing(multus_node: MultusNode) -> None:
    multus_node.nad("vhu-ok", _nad("1.0.0", "10.85.0.0/24"))
    multus_node.nad("vhu-bad", {**_nad("1.0.0", "10.86.0.0/24"), "bridge": "br-other"}, resource=None)
    pod = multus_node.pod("vhu-ok,vhu-bad", 1)
    r = multus_node.run("ADD", pod)
    assert r.code != 0
    err = json.loads(r.stdout)
    assert "br-other" in err["msg"] and "not allowed" in err["msg"], err
    assert multus_node.leftovers(pod) == [], "Multus's rollback (DEL of what was added) left something"
    assert not (multus_node.network_status(pod) or [])
    _del_twice(multus_node, pod)  # the runtime's own DEL after the failed ADD
    multus_node.release(pod)


def test_a_1_1_0_nad_stops_inside_multus_4_0(multus_node: MultusNode) -> None:
    """Multus 4.0.x's libcni (1.1.2) knows CNI up to 1.0.0: a NAD saying 1.1.0 fails there, before our plugin runs."""
    multus_node.nad("vhu-110", _nad("1.1.0", "10.87.0.0/24"))
    pod = multus_node.pod("vhu-110", 1)
    r = multus_node.run("ADD", pod)
    assert r.code != 0 and "1.1.0" in r.stdout, r.stdout + r.stderr
    assert multus_node.leftovers(pod) == []
    _del_twice(multus_node, pod)
    multus_node.release(pod)


def test_events_are_decoded_from_protobuf(multus_node: MultusNode) -> None:
    multus_node.nad("vhu-ev", _nad("0.3.1", "10.88.0.0/24"))
    pod = multus_node.pod("vhu-ev", 1)
    assert multus_node.run("ADD", pod).code == 0
    events = multus_node.api.list("v1", "Event", NAMESPACE)
    mine = [e for e in events if e.get("involvedObject", {}).get("name") == pod.name]
    posted = [r for r in multus_node.api.requests if r.method == "POST" and r.path.endswith("/events")]
    assert posted and {r.content_type for r in posted} == {CONTENT_TYPE}
    assert {e["reason"] for e in mine} == {"AddedInterface"}
    assert any("net1" in e["message"] and "vhu-ev" in e["message"] for e in mine), mine
    _del_twice(multus_node, pod)
    multus_node.release(pod)


def test_path_of_the_binary_is_the_one_asked(multus_binary: Path) -> None:
    import subprocess

    out = subprocess.run([str(multus_binary), "-version"], capture_output=True, text=True, check=False)
    assert "v4.0." in out.stdout + out.stderr, out
