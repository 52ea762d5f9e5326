"""The container runtime's and Multus's part of an attachment, as the lab plays it: the delegate netconf, the copy of
the device plugin's device-info file, the CNI exec of the installed shim, the ``network-status`` annotation and the
downward-API annotations file.

It plays what real Multus 4.0.x does on a node (tests/runtime/multus runs the real binary against the same parts):
the device ID comes from kubelet's PodResources API (``List``, served by the lab kubelet), and reaches the delegate
top-level (``deviceID``), in ``runtimeConfig`` and as ``pciBusID``; the delegate config says CNI 1.0.0 (Multus 4.0.x's
libcni stops there); the device plugin's ``dp/`` file is copied to ``cni/<namespace>-<nad>-<containerID>_<ifname>``
in the node's device-info folder (``/var/run/k8s.cni.cncf.io/devinfo``, shared by the machine: every name there is
an attachment's or carries the lab's device ID prefix); ``CNI_ARGS`` carries ``IgnoreUnknown`` twice, Multus's own
keys then the runtime's.

:class:`CniCall` is one recorded CNI invocation (what a runtime keeps to call DEL later), not a dataplane attachment
(that is :class:`vhostplug.model.Attachment`, made by the agent from this call).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.lab.paths import LabPaths

RESOURCE = "vhostplug.io/vhostuser"
IFNAME = "net1"
NAMESPACE = "demo"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
#: the newest CNI version Multus 4.0.x (libcni 1.1.2) runs: a NAD saying 1.1.0 fails inside it
MULTUS_CNI_VERSION = "1.0.0"


@dataclass
class CniCall:
    """One CNI invocation for a pod (``kind`` pod) or a virt-launcher pod (``kind`` vm), with ADD's result."""

    kind: str  # pod | vm
    name: str
    uid: str
    container_id: str
    netns_path: str
    device: str
    netconf: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)

    def cni_env(self, command: str, cni_path: str) -> dict[str, str]:
        pod = {
            "K8S_POD_NAMESPACE": NAMESPACE,
            "K8S_POD_NAME": self.name,
            "K8S_POD_INFRA_CONTAINER_ID": self.container_id,
            "K8S_POD_UID": self.uid,
        }
        # as Multus 4.0.x passes them on: its own (IgnoreUnknown=true + the pod's), then the runtime's as they came
        args = [("IgnoreUnknown", "true"), *pod.items(), ("IgnoreUnknown", "1"), *pod.items()]
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns_path,
            "CNI_IFNAME": IFNAME,
            "CNI_PATH": cni_path,
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in args),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def exec_cni(shim: Path, cni_path: Path, call: CniCall, command: str) -> dict[str, Any]:
    """Exec the installed shim exactly as a runtime does; raise with the plugin's error JSON on failure."""
    env = call.cni_env(command, str(cni_path))
    proc = subprocess.run(
        [str(shim)], input=json.dumps(call.netconf), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"CNI {command} for {call.kind} {call.name} exited {proc.returncode}: {proc.stdout.strip()} "
            f"{proc.stderr.strip()}".strip()
        )
    out: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return out


def netconf(
    nad: str,
    paths: LabPaths,
    bridge: str,
    device: str,
    devinfo_file: Path,
    subnet: str,
    container_root: str | None = None,
) -> dict[str, Any]:
    """The delegate netconf Multus 4.0.x hands our plugin: the NAD's config (CNI 1.0.0) + the device ID top-level, as
    ``pciBusID`` and in runtimeConfig with the device-info file, for our capabilities."""
    conf: dict[str, Any] = {
        "cniVersion": MULTUS_CNI_VERSION,
        "name": nad,
        "type": "vhostplug",
        "agentSocket": str(paths.agent_socket),
        "socketRoot": str(paths.socket_root),
        "bridge": bridge,
        "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True},
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(paths.ipam_dir)},
        "deviceID": device,
        "pciBusID": device,
        "runtimeConfig": {"deviceID": device, "CNIDeviceInfoFile": str(devinfo_file)},
    }
    if container_root:
        conf["containerSocketRoot"] = container_root
    return conf


def pod_device(paths: LabPaths, pod_name: str, resource: str = RESOURCE) -> str:
    """The device Multus resolves for the pod's network of ``resource``: from kubelet's PodResources ``List``."""
    from vhostplug.lab.podresources.server import list_pod_devices

    devices = list_pod_devices(paths.pod_resources_socket, NAMESPACE, pod_name, resource)
    if not devices:
        raise RuntimeError(f"PodResources reports no {resource} device for pod {NAMESPACE}/{pod_name}")
    return devices[0]


def devinfo_path(paths: LabPaths, nad: str, container_id: str, ifname: str = IFNAME) -> Path:
    """Where Multus 4.0.x puts the delegate's device-info file: ``cni/<namespace>-<nad>-<containerID>_<ifname>``."""
    return Path(paths.devinfo_dir) / "cni" / f"{NAMESPACE}-{nad}-{container_id}_{ifname}"


def multus_devinfo(paths: LabPaths, nad: str, container_id: str, device: str, resource: str = RESOURCE) -> Path:
    """Multus copies the device plugin's device-info file to the CNI's path before ADD; returns that path."""
    from vhostplug import deviceinfo

    src = deviceinfo.dp_dir(paths.devinfo_dir) / deviceinfo.dp_file_name(resource, device)
    dst = devinfo_path(paths, nad, container_id)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def host_socket(call: CniCall) -> Path:
    """The host path of a vhost-user attachment's socket (a CNI 1.0.0 result has no ``socketPath``)."""
    from vhostplug.deviceinfo import DEVICE_SOCKET_NAME

    return Path(call.netconf["socketRoot"]) / call.device / DEVICE_SOCKET_NAME


def network_status(nad: str, result: dict[str, Any], devinfo_file: Path) -> list[dict[str, Any]]:
    """The Multus ``network-status`` entry of our interface (device-info read back after ADD)."""
    iface = next(i for i in result.get("interfaces", []) if i.get("sandbox"))
    return [
        {
            "name": f"{NAMESPACE}/{nad}",
            "interface": iface["name"],
            "ips": [ip["address"].split("/")[0] for ip in result.get("ips", [])],
            "mac": iface["mac"],
            "dns": result.get("dns", {}),
            "device-info": json.loads(devinfo_file.read_text()),
        }
    ]


def annotations_file(annotations: dict[str, str]) -> str:
    """Kubernetes downward API annotations format: ``key="<Go-quoted value>"`` lines, as kubelet writes them."""
    from vhostplug.podinfo.goquote import quote

    return "".join(f"{k}={quote(v)}\n" for k, v in sorted(annotations.items()))
