"""containerd 1.6 (CRI plugin, runc) drives vhostplug as a user's node would: pod sandboxes made and removed over the
CRI v1 API, each checked in OVS (port, container ID, attached-mac), in the files (socket folder, app config file,
host-local's lease) and in CRI's own state (PodSandboxStatus IP, the CNI result containerd recorded)."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.runtime.conftest import Runtime
from vhostplug.cni.planning import own_folder_name
from vhostplug.model import Mode
from vhostplug_testsupport.containerd_node import ptp_conflist

IFNAME = "eth0"  # the name CRI gives the pod's first interface


def _name() -> str:
    return f"pod-{uuid.uuid4().hex[:8]}"


def check_attached(rt: Runtime, sid: str, network: str, mode: str) -> dict[str, Any]:
    """Everything RunPodSandbox must have made for ``sid``; returns what was seen."""
    status = rt.ctrd.cri.sandbox_status(sid, verbose=True)
    assert status.status.state == 0, "sandbox is not SANDBOX_READY"
    ip = status.status.network.ip
    assert ip, "PodSandboxStatus has no IP"
    lease = rt.ctrd.ipam_dir / network / ip
    assert lease.read_text().split()[0] == sid, "host-local recorded another container for the pod's IP"

    port = rt.node.port_of(sid, IFNAME)
    assert port is not None, f"no OVS port for {sid}/{IFNAME}"
    assert port.external_ids["vhostplug-container-id"] == sid
    assert port.ovs_type == Mode(mode).ovs_type
    folder = rt.node.socket_root / own_folder_name(sid, IFNAME)
    assert folder.is_dir()
    assert port.external_ids["vhostplug-socket"] == str(folder / "vhu.sock")
    app = json.loads((folder / f"{sid}-{IFNAME}").read_text())
    mac = port.external_ids["attached-mac"]
    assert app == {"vhostname": "vhu.sock", "vhostmac": mac, "mode": mode}
    if mode == "client":
        assert (folder / "vhu.sock").is_socket(), "client mode: OVS's socket was not moved into the pod's folder"

    info = json.loads(status.info["info"])
    recorded = info["cniResult"]["Interfaces"][IFNAME]
    assert recorded["Mac"] == mac, "the MAC containerd recorded differs from OVS's attached-mac"
    assert [c["IP"] for c in recorded["IPConfigs"]] == [ip]
    netns = rt.ctrd.cri.sandbox_netns(sid)
    assert recorded["Sandbox"] == netns and Path(netns).exists()
    return {"ip": ip, "port": port.name, "ofport": port.ofport, "folder": folder, "netns": netns, "lease": lease}


def check_detached(rt: Runtime, sid: str, seen: dict[str, Any]) -> None:
    assert rt.node.port_of(sid, IFNAME) is None
    assert not seen["folder"].exists()
    assert not seen["lease"].exists(), "host-local still holds the pod's address"
    assert not Path(seen["netns"]).exists()
    assert sid not in [s.id for s in rt.ctrd.cri.list_sandboxes()]


def remove(rt: Runtime, sid: str) -> None:
    rt.ctrd.cri.stop_sandbox(sid)
    rt.ctrd.cri.remove_sandbox(sid)


@pytest.mark.parametrize("cni_version", ["1.0.0", "0.4.0", "0.3.1"])
@pytest.mark.parametrize("mode", ["server", "client"])
def test_sandbox_attaches_and_detaches(runtime: Runtime, mode: str, cni_version: str) -> None:
    network = runtime.use(runtime.conflist(mode=mode, cni_version=cni_version))
    before = runtime.node.cni_calls()
    sid = runtime.ctrd.cri.run_sandbox(_name())
    seen = check_attached(runtime, sid, network, mode)
    after_run = runtime.node.cni_calls()
    assert after_run.get("ADD/0", 0) - before.get("ADD/0", 0) == 1

    remove(runtime, sid)
    check_detached(runtime, sid, seen)
    calls = runtime.node.cni_calls()
    # containerd's two DELs (StopPodSandbox with netns and prevResult, RemovePodSandbox with neither) both succeed
    assert calls.get("DEL/0", 0) - after_run.get("DEL/0", 0) == 2
    assert calls.get("DEL", 0) == calls.get("DEL/0", 0)


def test_five_sandboxes_at_once(runtime: Runtime) -> None:
    network = runtime.use(runtime.conflist())
    ids: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ids.append(runtime.ctrd.cri.run_sandbox(_name()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    seen = {sid: check_attached(runtime, sid, network, "server") for sid in ids}
    assert len({s["ip"] for s in seen.values()}) == 5
    assert len({s["port"] for s in seen.values()}) == 5
    assert len(runtime.node.ports()) == 5

    threads = [threading.Thread(target=remove, args=(runtime, sid)) for sid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sid, s in seen.items():
        check_detached(runtime, sid, s)


def test_containerd_restart_keeps_pods(runtime: Runtime) -> None:
    network = runtime.use(runtime.conflist())
    ids = [runtime.ctrd.cri.run_sandbox(_name()) for _ in range(2)]
    seen = {sid: check_attached(runtime, sid, network, "server") for sid in ids}
    calls = runtime.node.cni_calls()

    runtime.ctrd.restart()
    runtime.ctrd.wait_cni_config(network)

    assert runtime.node.cni_calls() == calls, "containerd called the plugin while restarting"
    for sid, s in seen.items():
        again = check_attached(runtime, sid, network, "server")
        assert (again["ip"], again["port"], again["ofport"]) == (s["ip"], s["port"], s["ofport"])

    new = runtime.ctrd.cri.run_sandbox(_name())
    seen[new] = check_attached(runtime, new, network, "server")
    for sid, s in seen.items():
        remove(runtime, sid)
        check_detached(runtime, sid, s)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cni_version": "1.1.0"}, 'plugin type="vhostplug" failed (add): unsupported CNI result version "1.1.0"'),
        ({"ipam": None}, "failed to find network info for sandbox"),
    ],
    ids=["cni-1.1.0", "no-ipam"],
)
def test_what_containerd_1_6_refuses(runtime: Runtime, change: dict[str, Any], message: str) -> None:
    """docs/cni.md's matrix: a 1.1.0 result is beyond containerd 1.6's libcni, and CRI needs an IP on eth0. Our ADD
    succeeds, containerd fails the sandbox and sends DEL: nothing is left."""
    conflist = runtime.conflist(cni_version=change.get("cni_version", "1.0.0"))
    if "ipam" in change:
        del conflist["plugins"][0]["ipam"]
    runtime.use(conflist)
    before = runtime.node.cni_calls()
    with pytest.raises(grpc.RpcError) as err:
        runtime.ctrd.cri.run_sandbox(_name())
    assert message in (err.value.details() or ""), err.value.details()
    calls = runtime.node.cni_calls()
    assert calls.get("ADD/0", 0) - before.get("ADD/0", 0) == 1
    assert calls.get("DEL/0", 0) - before.get("DEL/0", 0) >= 1
    assert runtime.node.ports() == []
    assert runtime.ctrd.cri.list_sandboxes() == []


def test_a_chained_conflist_keeps_the_first_plugins_result(runtime: Runtime) -> None:
    """A stock plugin first (Debian's ptp with host-local: the pod's eth0 and its IP), then vhostplug given its
    prevResult: containerd's recorded result still has ptp's IP (CRI needs it) and the pod gets its vhost-user port;
    removing the sandbox removes both plugins' work."""
    ptp = ptp_conflist(runtime.ctrd.ipam_dir, f"vhp-chain-{uuid.uuid4().hex[:8]}", subnet="10.97.0.0/24")
    ours = runtime.conflist(name=ptp["name"])["plugins"][0]
    del ours["ipam"]  # the address is ptp's
    network = runtime.use({**ptp, "plugins": [*ptp["plugins"], ours]})
    sid = runtime.ctrd.cri.run_sandbox(_name())
    try:
        status = runtime.ctrd.cri.sandbox_status(sid, verbose=True)
        ip = status.status.network.ip
        assert ip.startswith("10.97.0."), ip
        recorded = json.loads(status.info["info"])["cniResult"]["Interfaces"][IFNAME]
        assert [c["IP"] for c in recorded["IPConfigs"]] == [ip]
        port = runtime.node.port_of(sid, IFNAME)
        assert port is not None and port.external_ids["vhostplug-network"] == network
        lease = runtime.ctrd.ipam_dir / network / ip
        assert lease.read_text().split()[0] == sid
    finally:
        remove(runtime, sid)
    assert runtime.node.port_of(sid, IFNAME) is None
    assert not lease.exists()
