"""`vhostplug lab demo` end to end, in process, with assertions: traffic counted in both pods and through OVS, VM pings
answered, the JSON report's keys, and nothing left after teardown (also when a step fails)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from vhostplug.lab import demo
from vhostplug.lab.pods import pids_with_arg
from vhostplug.podinfo import goquote

REPORT_KEYS = {
    "run_dir",
    "ok",
    "error",
    "attachments",
    "ovs_ports",
    "pods",
    "vms",
    "phases",
    "total_seconds",
    "teardown",
    "kept",
}


@pytest.fixture
def run_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="vhp-e2e-", dir="/tmp"))  # short: unix socket paths stay < 108 bytes
    try:
        yield d
    finally:
        if d.exists():  # a failed assertion before teardown: still leave nothing behind
            from vhostplug.lab.stack import lab_down

            lab_down(d)
        shutil.rmtree(d, ignore_errors=True)


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def assert_nothing_left(run_dir: Path, report: dict[str, Any]) -> None:
    tag = demo.Names.of(run_dir).tag
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"vhp{tag}-" not in netns
    mounts = Path("/proc/mounts").read_text()
    assert str(run_dir) not in mounts
    assert not run_dir.exists()
    virsh = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True, text=True)
    assert f"vhp-{tag}-" not in virsh.stdout
    prefixes = [p["file_prefix"] for p in report["pods"]]
    for prefix in prefixes:
        assert not (Path("/var/run/dpdk") / prefix).exists()
        assert pids_with_arg(f"--file-prefix={prefix}") == []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert str(run_dir) not in cmdline, f"left running: {cmdline}"
            assert f"vhp-{tag}-" not in cmdline, f"left running: {cmdline}"


@pytest.mark.root
def test_demo_end_to_end(run_dir: Path, tmp_path: Path) -> None:
    require_root()
    out = tmp_path / "report.json"
    rc = demo.run_demo(run_dir, json_out=out)
    report = _report(out)
    assert rc == 0, report["error"]
    assert set(report) >= REPORT_KEYS
    assert report["ok"] is True and report["error"] is None

    # pods: a device each, attached through the shim, socket at the container path the device plugin named
    pods = [a for a in report["attachments"] if a["kind"] == "pod"]
    vms = [a for a in report["attachments"] if a["kind"] == "vm"]
    assert len(pods) == 2 and len(vms) == 2
    assert len({a["device"] for a in report["attachments"]}) == 4
    for a in pods:
        assert a["container_socket"] == f"/var/run/vhostplug/{a['device']}/vhu.sock"
        assert a["ips"]
    # testpmd in both pods counted packets both ways, and so did OVS on their ports
    assert len(report["pods"]) == 2
    for p in report["pods"]:
        assert p["rx_packets"] > 0 and p["tx_packets"] > 0 and p["rx_pps"] > 0, p
        assert p["vdevs"] == [
            f"net_virtio_user0,path=/var/run/vhostplug/{_device(report, p['name'])}/vhu.sock,server=1,packed_vq=1"
        ]
    # the rate is measured txonly → rxonly, one direction after the other, and the report says the core layout
    flows = report["traffic"]["flows"]
    assert [(f["sender"], f["receiver"]) for f in flows] == [("testpmd-a", "testpmd-b"), ("testpmd-b", "testpmd-a")]
    for f in flows:
        assert f["received"] > 0 and f["received"] <= f["sent"] + 64 and f["rx_mpps"] > 0, f
    layout = report["traffic"]["cpu_layout"]
    assert layout["ovs_pmd_cores"] == [1] and layout["app_cores"] == [0] and "core 1" in layout["text"]
    assert len(report["ovs_ports"]) == 4
    for port in report["ovs_ports"]:
        assert port["type"] == "dpdkvhostuserclient"
        assert port["rx_packets"] > 0 and port["tx_packets"] > 0, port
    # the VMs pinged each other through OVS
    assert len(report["vms"]) == 2
    for vm in report["vms"]:
        assert vm["ping_received"] > 0 and vm["ping_received"] == vm["ping_transmitted"], vm
        assert vm["rtt_avg_ms"] > 0
    # vDPA (stand-in VFs): two pods got their netdevs through the CNI and pinged each other via their representors
    assert [r["pod"] for r in report["vdpa"]] == ["vdpa-a", "vdpa-b"]
    for r in report["vdpa"]:
        assert r["ping_received"] == r["ping_transmitted"] == 3, r
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert not any(r["representor"] in host_links for r in report["vdpa"])
    # DRA: two pods' ports from ResourceClaims (allocated by CEL from the agent's slices, prepared by the agent,
    # CDI applied), testpmd through OVS both ways; one stable container path per pod claim + request; unprepared
    dra = report["dra"]
    assert [e["pod"] for e in dra] == ["dra-p", "dra-q", "virt-launcher-vm-d"]
    # the VM: the sidecar took the socket and MTU from the claim's device metadata; it pinged a device-plugin VM
    vm = dra.pop()
    received, sent = map(int, vm["vm_ping"].split("/"))
    assert 0 < received == sent and vm["domain_mtu"] == vm["mtu"] == 1500, vm
    assert vm["container_socket"].startswith("/var/run/vhostplug/dra/resourceclaimtemplates/vm")
    for e in dra:
        assert set(e) >= {"pod", "claim", "request", "device", "cdi_device", "host_socket", "container_socket", "mtu"}
        assert e["claim"].startswith(f"{e['pod']}-vhu-") and e["request"] == "port" and e["mtu"] == 1500
        assert e["cdi_device"].startswith("vhostplug.io/vhostuser=") and e["mpps"] > 0, e
        assert e["container_socket"] == "/var/run/vhostplug/dra/resourceclaimtemplates/vhu/port/vhu.sock"
        assert e["vdevs"] == [f"net_virtio_user0,path={e['container_socket']},server=1,packed_vq=1"]
    assert dra[0]["host_socket"] != dra[1]["host_socket"] and dra[0]["device"] != dra[1]["device"]
    assert sum("NodeUnprepareResources" in line and line.endswith(": done") for line in report["teardown"]) == 3
    names = [p["name"] for p in report["phases"]]
    assert names[-1] == "teardown" and len(names) == 10
    assert report["total_seconds"] < 300
    assert_nothing_left(run_dir, report)


def _device(report: dict[str, Any], name: str) -> str:
    return str(next(a["device"] for a in report["attachments"] if a["name"] == name))


@pytest.mark.root
def test_demo_step_failure_tears_down(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bogus testpmd binary (the documented VHOSTPLUG_DEMO_TESTPMD hook) fails the testpmd step; all is torn down."""
    require_root()
    bogus = "/nonexistent/dpdk-testpmd"
    monkeypatch.setenv(demo.ENV_TESTPMD, bogus)
    out = tmp_path / "report.json"
    rc = demo.run_demo(run_dir, json_out=out, vms=False)
    report = _report(out)
    assert rc == 1
    assert report["ok"] is False
    assert "testpmd" in report["error"]["step"]
    assert bogus in report["error"]["command"]
    assert report["error"]["detail"]
    assert report["phases"][-1]["name"] == "teardown"
    assert any("CNI DEL" in line for line in report["teardown"])
    assert_nothing_left(run_dir, report)


def test_annotations_file_reads_back_as_kubernetes_downward_api() -> None:
    status = [{"name": "demo/n", "interface": "net1", "device-info": {"type": "vhost-user", "path": 'a"b\\c'}}]
    text = demo.annotations_file({demo.NETWORK_STATUS: json.dumps(status), "x/y": "plain"})
    parsed = goquote.parse_annotations(text)
    assert json.loads(parsed[demo.NETWORK_STATUS]) == status
    assert parsed["x/y"] == "plain"


def test_cleanup_without_state_does_nothing(tmp_path: Path) -> None:
    assert demo.cleanup(tmp_path) == []
    assert os.listdir(tmp_path) == []
