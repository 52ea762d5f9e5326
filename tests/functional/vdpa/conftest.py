"""Fixtures for vDPA CNI tests: stand-in vDPA parts (sysfs tree + veth pairs + char nodes), lab pods, and the real
agent (CNI server with the device-plugin config that declares the vDPA pools) on the private OVS-DPDK."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.pods import LabPod, create_pod, delete_pod, ensure_host_dirs
from vhostplug.lab.vdpa_parts import StandIn, build
from vhostplug.ovsvhost import ID_VDPA_DEVICE
from vhostplug_testsupport.bridges import delete_bridge_if_ours
from vhostplug_testsupport.cniagent import AgentProc, CniResult, make_agent

VIRTIO_POOL = "vhostplug.io/vdpa_virtio"
VHOST_POOL = "vhostplug.io/vdpa_vhost"


@dataclass
class VdpaRig:
    agent: AgentProc
    parts: StandIn
    bridge: str
    root: Path
    pods: list[LabPod] = field(default_factory=list)

    def pod(self, name: str) -> LabPod:
        tag = uuid.uuid4().hex[:6]
        pod = create_pod(
            f"{name}-{tag}", "default", str(uuid.uuid4()), f"vhp-vd-{name}-{tag}", tmpfs=("/etc/podnetinfo",)
        )
        self.pods.append(pod)
        return pod

    def netconf(self, device: str, pool: str | None = VIRTIO_POOL, **kw: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": "1.1.0",
            "name": "vdpanet",
            "type": "vhostplug",
            "device": "vdpa",
            "agentSocket": str(self.agent.socket),
            "bridge": self.bridge,
            "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True},
            "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(self.root / "ipam")},
            "runtimeConfig": {"deviceID": device},
        }
        if pool:
            conf["resourceName"] = pool
        conf.update(kw)
        return conf

    def devinfo_path(self, cid: str) -> Path:
        return self.root / "devinfo" / f"vdpanet-{cid}-net1-device.json"

    def add(self, pod: LabPod, cid: str, device: str, **kw: Any) -> CniResult:
        conf = self.netconf(device, **kw)
        conf["runtimeConfig"]["CNIDeviceInfoFile"] = str(self.devinfo_path(cid))
        return self.agent.run("ADD", conf, cid, "net1", pod.netns_path)

    def ports(self) -> list[str]:
        """Names of the OVS interfaces that are vDPA representors we made (asked of OVSDB directly)."""
        rows = ovsdb_rpc.select(self.agent.ovsdb, "Interface", columns=["name", "external_ids"], where=[])
        return sorted(str(r["name"]) for r in rows if ID_VDPA_DEVICE in ovsdb_rpc.ovs_map(r.get("external_ids")))


def in_pod(pod: LabPod, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", pod.netns, *cmd], capture_output=True, text=True, check=False)


def host_link(name: str) -> dict[str, Any] | None:
    proc = subprocess.run(["ip", "-j", "link", "show", name], capture_output=True, text=True, check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


@pytest.fixture
def vdpa_rig(private_ovs: PrivateOvs) -> Iterator[VdpaRig]:
    require_root()
    root = Path(tempfile.mkdtemp(prefix="vhp-vd-", dir="/tmp"))
    parts = build(root / "hw", virtio=3, vhost=1, switch_netns=private_ovs.netns)
    dp_conf = {
        "dataplane": {"enabled": False},
        "vdpa": {
            "sysfsRoot": str(parts.sys),
            "devRoot": str(parts.dev),
            "pools": [
                {"resourceName": VIRTIO_POOL, "selectors": {"vdpaType": "virtio"}},
                {"resourceName": VHOST_POOL, "selectors": {"vdpaType": "vhost"}},
            ],
        },
    }
    bridge = f"brvd{uuid.uuid4().hex[:6]}"
    agent = make_agent(
        private_ovs,
        devicePlugin=dp_conf,
        devicePluginDir=str(root / "kubelet"),
        devinfoDir=str(root / "devinfo"),
        bridges={"allowed": [bridge]},  # node policy: the one bridge these networks use
    )
    rig = VdpaRig(agent, parts, bridge, root)
    made = ensure_host_dirs(["/etc/podnetinfo"])  # the mount point of the pods' downward API tmpfs
    try:
        yield rig
    finally:
        print(agent.log.read_text()[-4000:] if agent.log.exists() else "(no agent log)")
        agent.stop()
        assert agent.dataplane is not None
        for name in rig.ports():
            agent.dataplane.detach(name)
        delete_bridge_if_ours(agent.dataplane.endpoint, rig.bridge)
        agent.dataplane.close()
        for pod in rig.pods:
            delete_pod(pod)
        parts.remove()
        for folder in made:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        shutil.rmtree(agent.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
