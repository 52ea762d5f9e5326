"""Where the lab keeps each of its parts under one run folder (OVS, agent, CNI shim, socket root, kubelet folders).

Every lab module and bench that needs a path of a running lab asks :class:`LabPaths`; nothing else spells them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vhostplug.validation import DEFAULT_DEVINFO_DIR


class LabPaths:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.ovs_dir = self.run_dir / "ovs"
        self.agent_socket = self.run_dir / "agent" / "agent.sock"
        self.agent_config = self.run_dir / "agent.yaml"
        self.agent_pidfile = self.run_dir / "agent.pid"
        self.agent_log = self.run_dir / "agent.log"
        self.cni_bin_dir = self.run_dir / "cni" / "bin"
        self.cni_bin = self.cni_bin_dir / "vhostplug"
        self.socket_root = self.run_dir / "s"
        self.device_plugin_dir = self.run_dir / "kubelet" / "device-plugins"
        self.pod_resources_socket = self.run_dir / "kubelet" / "pod-resources" / "kubelet.sock"
        # where real nodes keep device-info (Multus hard-codes it): shared by every lab on the machine, so the lab's
        # files there are named by attachment or carry its device ID prefix (stack.device_id_prefix)
        self.devinfo_dir = DEFAULT_DEVINFO_DIR
        self.ipam_dir = self.run_dir / "ipam"
        self.vdpa_dir = self.run_dir / "vdpa"  # the stand-in vDPA hardware (sysfs tree + dev root)
        # DRA: kubelet's plugin folders, the CDI folder the lab's runtime reads, the stand-in kube-apiserver
        self.plugins_dir = self.run_dir / "kubelet" / "plugins"
        self.plugins_registry_dir = self.run_dir / "kubelet" / "plugins_registry"
        self.cdi_dir = self.run_dir / "cdi"
        self.apiserver_url = self.run_dir / "apiserver.url"
        self.apiserver_kubeconfig = self.run_dir / "apiserver.kubeconfig"
        self.apiserver_pidfile = self.run_dir / "apiserver.pid"
        self.apiserver_log = self.run_dir / "apiserver.log"

    @property
    def node_name(self) -> str:
        """The lab node's name (in its ResourceSlices and claims' allocations): unique per run folder."""
        return "lab-" + hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:6]
