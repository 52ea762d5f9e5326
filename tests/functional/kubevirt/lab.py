"""A lab "virt-launcher pod": its device folder, network-info file, links folder, and a real sidecar process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from tests.conftest import REPO
from vhostplug.kubevirt.hooks import v1alpha3_pb2, v1alpha3_pb2_grpc
from vhostplug.lab.vms import prepare_socket_dir

VHOSTPLUG = REPO / ".venv" / "bin" / "vhostplug"


def vmi_json(name: str, mac: str, iface: str = "net1") -> bytes:
    return json.dumps(
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "domain": {
                    "devices": {
                        "interfaces": [{"name": iface, "binding": {"name": "vhostuser"}, "macAddress": mac}],
                    }
                },
                "networks": [{"name": iface, "multus": {"networkName": "default/vhostplug"}}],
            },
        }
    ).encode()


@dataclass
class LauncherPod:
    """What one virt-launcher pod would hold; ``root`` must be short (socket paths)."""

    root: Path
    iface: str = "net1"
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def device_dir(self) -> Path:
        return self.root / "dev"

    @property
    def real_socket(self) -> Path:
        return self.device_dir / "vhu.sock"

    @property
    def links_dir(self) -> Path:
        return self.root / "links"

    @property
    def hook_socket(self) -> Path:
        return self.root / "hook.sock"

    def prepare(self) -> None:
        prepare_socket_dir(self.device_dir)
        info = {
            "interfaces": [
                {
                    "network": self.iface,
                    "deviceInfo": {
                        "type": "vhost-user",
                        "version": "1.1.0",
                        "vhost-user": {"mode": "server", "path": str(self.real_socket)},
                    },
                }
            ]
        }
        (self.root / "network-info").write_text(json.dumps(info))

    def start_sidecar(self, links_dir: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [
                str(VHOSTPLUG),
                "kubevirt-sidecar",
                "--socket",
                str(self.hook_socket),
                "--network-info",
                str(self.root / "network-info"),
                "--links-dir",
                str(links_dir or self.links_dir),
                "--wait-timeout",
                "5",
            ],
            env=dict(os.environ, NETWORK_BINDING_PLUGIN_NAME="vhostuser"),
        )
        deadline = time.monotonic() + 20
        while not self.hook_socket.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sidecar did not come up")
            time.sleep(0.05)

    def define_domain(self, domain_xml: str, vmi: bytes) -> bytes:
        with grpc.insecure_channel(f"unix:{self.hook_socket}") as ch:
            stub = v1alpha3_pb2_grpc.CallbacksStub(ch)
            res = stub.OnDefineDomain(
                v1alpha3_pb2.OnDefineDomainParams(domainXML=domain_xml.encode(), vmi=vmi), timeout=30
            )
        out: bytes = res.domainXML
        return out

    def shutdown(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                with grpc.insecure_channel(f"unix:{self.hook_socket}") as ch:
                    v1alpha3_pb2_grpc.CallbacksStub(ch).Shutdown(v1alpha3_pb2.ShutdownParams(), timeout=5)
            except grpc.RpcError:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
