"""A node as real Multus 4.0.x sees it, shared by the tests of this folder (one agent on the session's private OVS):

- the real Multus thin plugin (:func:`vhostplug.lab.realmultus.locate`: ``$VHOSTPLUG_MULTUS``, else
  ``shared/peers/multus`` beside the repository), exec'd as containerd execs the cluster's CNI: a conflist whose
  cluster network is Debian's ``ptp`` + ``host-local``, CNI_ARGS with the K8S_POD_* keys, a real network namespace;
- the lab kubelet with our agent's device plugin registered to it, serving PodResources v1 (Multus's ``List``);
- the stand-in kube-apiserver (:mod:`vhostplug.lab.apiserver`) with Kubernetes protobuf bodies decoded
  (:mod:`vhostplug.lab.apiserver_proto`), holding the pods and NetworkAttachmentDefinitions, and Multus's kubeconfig;
- device-info where real nodes keep it, ``/var/run/k8s.cni.cncf.io/devinfo`` (shared by the machine: this suite's
  devices have an ID prefix of their own, its files are named by attachment, and only they are checked and removed).

Without the binary (and no ``VHOSTPLUG_MULTUS``), or with ``VHOSTPLUG_MULTUS=none``, tests/conftest.py leaves the suite
out and says so in the summary; a ``VHOSTPLUG_MULTUS`` naming a missing file fails it. See docs/cni.md.
"""

from __future__ import annotations

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
from vhostplug import deviceinfo
from vhostplug.lab import apiserver_proto, realmultus
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.kubelet import LabKubelet
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.podresources.server import PodRef
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent

RESOURCE = "vhostplug.io/vhostuser"
NAMESPACE = "default"
NAD_GROUP = "k8s.cni.cncf.io/v1"
NAD_PLURAL = "network-attachment-definitions"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
DEVINFO = deviceinfo.DEFAULT_DEVINFO_DIR


@dataclass
class Pod:
    name: str
    uid: str
    container_id: str
    netns: str
    devices: list[str] = field(default_factory=list)

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"


@dataclass
class MultusNode:
    binary: Path
    root: Path
    agent: AgentProc
    kubelet: LabKubelet
    api: ApiServer
    kubeconfig: Path
    prefix: str  # this suite's device ID prefix
    pods: list[Pod] = field(default_factory=list)

    @property
    def bin_dir(self) -> Path:
        return self.agent.cni_bin.parent

    @property
    def pod_resources_dir(self) -> Path:
        return self.root / "pod-resources"

    def conflist(self) -> dict[str, Any]:
        """The thin plugin's config as the runtime hands it over (one plugin of the cluster's conflist)."""
        return {
            "cniVersion": "0.3.1",
            "name": "multus-cni-network",
            "type": "multus",
            "kubeconfig": str(self.kubeconfig),
            "cniDir": str(self.root / "multus-cache"),
            "binDir": str(self.bin_dir),
            "logFile": str(self.root / "multus.log"),
            "logLevel": "debug",
            "logToStderr": False,
            "delegates": [
                {
                    "cniVersion": "0.3.1",
                    "name": "cluster",
                    "plugins": [
                        {
                            "type": "ptp",
                            "ipMasq": False,
                            "ipam": {"type": "host-local", "subnet": "10.81.0.0/24", "dataDir": str(self.ipam_dir)},
                        }
                    ],
                }
            ],
        }

    @property
    def ipam_dir(self) -> Path:
        return self.root / "ipam"

    def nad(self, name: str, config: dict[str, Any], resource: str | None = RESOURCE) -> None:
        config = {**config, "name": name}
        ipam = config.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == "host-local":
            config["ipam"] = {**ipam, "dataDir": str(self.ipam_dir)}  # leases in this suite's folder
        meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
        if resource:
            meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": resource}
        self.api.put(
            {"apiVersion": NAD_GROUP, "kind": "NetworkAttachmentDefinition", "metadata": meta,
             "spec": {"config": json.dumps(config)}},
            plural=NAD_PLURAL,
        )  # fmt: skip

    def pod(self, networks: str, devices: int) -> Pod:
        """A pod (in the API server) asking for ``networks``, with ``devices`` of our resource allocated to it by the
        lab kubelet (PodResources reports them), and its sandbox's network namespace."""
        name = f"mu-{uuid.uuid4().hex[:8]}"
        stored = self.api.put(
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": name, "namespace": NAMESPACE, "annotations": {"k8s.v1.cni.cncf.io/networks": networks}},
             "spec": {"nodeName": "lab", "containers": [{"name": "app", "image": "app"}]}}
        )  # fmt: skip
        pod = Pod(name, stored["metadata"]["uid"], uuid.uuid4().hex + uuid.uuid4().hex, f"vhpmu{uuid.uuid4().hex[:8]}")
        subprocess.run(["ip", "netns", "add", pod.netns], check=True)
        self.pods.append(pod)
        if devices:
            pod.devices, _ = self.kubelet.allocate(RESOURCE, devices, pod=PodRef(NAMESPACE, name))
        return pod

    def run(self, command: str, pod: Pod, netns: bool = True) -> realmultus.MultusRun:
        args = {
            "IgnoreUnknown": "1",
            "K8S_POD_NAMESPACE": NAMESPACE,
            "K8S_POD_NAME": pod.name,
            "K8S_POD_INFRA_CONTAINER_ID": pod.container_id,
            "K8S_POD_UID": pod.uid,
        }
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": pod.container_id,
            "CNI_NETNS": pod.netns_path if netns else "",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.bin_dir),
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in args.items()),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "VHOSTPLUG_AGENT_SOCKET": str(self.agent.socket),  # a node's NAD names no socket: the node's default
        }
        return realmultus.exec_multus(self.binary, env, json.dumps(self.conflist()), self.pod_resources_dir)

    def network_status(self, pod: Pod) -> list[dict[str, Any]] | None:
        stored = self.api.get("v1", "Pod", pod.name, NAMESPACE)
        raw = ((stored or {}).get("metadata", {}).get("annotations") or {}).get(NETWORK_STATUS)
        return json.loads(raw) if raw else None

    def cni_devinfo_files(self, pod: Pod) -> list[str]:
        folder = DEVINFO / "cni"
        return sorted(p.name for p in folder.glob(f"*{pod.container_id}*")) if folder.is_dir() else []

    def leases(self) -> list[str]:
        return sorted(str(p.relative_to(self.ipam_dir)) for p in self.ipam_dir.glob("*/[0-9]*"))

    def leftovers(self, pod: Pod) -> list[str]:
        """What a pod's attachments may leave: OVS ports, app config files, device-info files, address leases."""
        ports = self.agent.our_ports()
        configs = [str(p) for p in self.agent.socket_root.glob(f"*/{pod.container_id}-*")]
        return ports + configs + self.cni_devinfo_files(pod) + self.leases()

    def release(self, pod: Pod) -> None:
        self.kubelet.release_pod(NAMESPACE, pod.name)
        for name in self.cni_devinfo_files(pod):  # left by a test that failed before DEL: only this pod's
            (DEVINFO / "cni" / name).unlink(missing_ok=True)
        subprocess.run(["ip", "netns", "delete", pod.netns], check=False, capture_output=True)
        self.pods.remove(pod)


@pytest.fixture(scope="package")
def multus_binary() -> Path:
    try:
        found = realmultus.locate()
    except realmultus.MultusMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    assert found is not None, "VHOSTPLUG_MULTUS=none: this suite should not have been collected"
    return found


@pytest.fixture(scope="package")
def multus_node(private_ovs: PrivateOvs, multus_binary: Path) -> Iterator[MultusNode]:
    require_root()
    root = Path(tempfile.mkdtemp(prefix="vhp-mu-", dir="/tmp"))
    prefix = f"mu{uuid.uuid4().hex[:6]}-"
    kubelet = LabKubelet(root / "device-plugins")
    kubelet.start()
    kubelet.serve_pod_resources(root / "pod-resources" / "kubelet.sock")
    api = apiserver_proto.install(ApiServer()).start()
    agent = make_agent(
        private_ovs,
        devinfoDir=str(DEVINFO),
        devicePluginDir=str(kubelet.folder),
        devicePlugin={"vhostuser": {"count": 4, "idPrefix": prefix}},
    )
    shutil.copy2("/usr/lib/cni/ptp", agent.cni_bin.parent / "ptp")
    node = MultusNode(multus_binary, root, agent, kubelet, api, api.kubeconfig(root / "kubeconfig"), prefix)
    try:
        kubelet.wait_for(RESOURCE, lambda devs: len(devs) == 4, timeout=30)
        yield node
    finally:
        for pod in list(node.pods):  # a test that failed half-way: DEL as the runtime would, then forget the pod
            node.run("DEL", pod)
            node.release(pod)
        stop_agent(agent, bridges=("br-cni", "br-vhost"))
        kubelet.stop()
        api.stop()
        shutil.rmtree(root, ignore_errors=True)
    left = sorted(p.name for p in (DEVINFO / "dp").glob(f"*-{prefix}*")) if (DEVINFO / "dp").is_dir() else []
    assert not left, f"the device plugin left device-info files in the machine's folder: {left}"
