"""A minimal CRI v1 client (RuntimeService only) over containerd's unix socket, on our own stubs in ``criapi``.

Just what the runtime tests and the sandbox benchmark need: version, readiness, the loaded CNI config, and the pod
sandbox life cycle. Errors surface as ``grpc.RpcError`` with containerd's message.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from vhostplug_testsupport.criapi import api_pb2 as pb
from vhostplug_testsupport.criapi import api_pb2_grpc as pb_grpc

STATE_NAMES = {pb.SANDBOX_READY: "SANDBOX_READY", pb.SANDBOX_NOTREADY: "SANDBOX_NOTREADY"}


@dataclass(frozen=True)
class Sandbox:
    id: str
    name: str
    state: str


class CriClient:
    def __init__(self, socket: Path, timeout: float = 120.0) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.stub: Any = pb_grpc.RuntimeServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    # -- runtime -----------------------------------------------------------------------------------------------
    def version(self) -> pb.VersionResponse:
        resp: pb.VersionResponse = self.stub.Version(pb.VersionRequest(version="v1"), timeout=self.timeout)
        return resp

    def conditions(self, verbose: bool = False) -> tuple[dict[str, pb.RuntimeCondition], dict[str, str]]:
        resp = self.stub.Status(pb.StatusRequest(verbose=verbose), timeout=10)
        return {c.type: c for c in resp.status.conditions}, dict(resp.info)

    def runtime_ready(self) -> bool:
        conds, _ = self.conditions()
        return "RuntimeReady" in conds and conds["RuntimeReady"].status

    def network_ready(self) -> bool:
        conds, _ = self.conditions()
        return "NetworkReady" in conds and conds["NetworkReady"].status

    def cni_config_text(self) -> str:
        """The CNI configuration containerd has loaded, as it reports it (JSON with each conflist's source)."""
        _, info = self.conditions(verbose=True)
        return info.get("cniconfig", "")

    # -- sandboxes ---------------------------------------------------------------------------------------------
    @staticmethod
    def sandbox_config(name: str, namespace: str = "default", log_dir: str = "") -> pb.PodSandboxConfig:
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=str(uuid.uuid4()), namespace=namespace, attempt=0),
            hostname=name[:63],
            log_directory=log_dir,
            labels={"vhostplug.test": "1"},
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
                )
            ),
        )

    def run_sandbox(self, name: str, namespace: str = "default") -> str:
        req = pb.RunPodSandboxRequest(config=self.sandbox_config(name, namespace))
        return str(self.stub.RunPodSandbox(req, timeout=self.timeout).pod_sandbox_id)

    def stop_sandbox(self, sandbox_id: str) -> None:
        self.stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def remove_sandbox(self, sandbox_id: str) -> None:
        self.stub.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def sandbox_status(self, sandbox_id: str, verbose: bool = False) -> pb.PodSandboxStatusResponse:
        req = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        resp: pb.PodSandboxStatusResponse = self.stub.PodSandboxStatus(req, timeout=self.timeout)
        return resp

    def sandbox_netns(self, sandbox_id: str) -> str:
        """The sandbox's network namespace path, from the verbose status containerd returns."""
        info = json.loads(self.sandbox_status(sandbox_id, verbose=True).info.get("info", "{}"))
        for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network":
                return str(ns.get("path", ""))
        return ""

    def list_sandboxes(self) -> list[Sandbox]:
        resp = self.stub.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=self.timeout)
        return [Sandbox(s.id, s.metadata.name, STATE_NAMES.get(s.state, str(s.state))) for s in resp.items]
