"""Our CRI subset keeps the wire numbers of k8s.io/cri-api v0.25.0 (what containerd 1.6.20 speaks), and its stubs are
part of the committed-stubs check."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

from vhostplug_testsupport.criapi import api_pb2 as pb

REPO = Path(__file__).resolve().parents[3]

# (message, field, number) as in cri-api v0.25.0 pkg/apis/runtime/v1/api.proto
NUMBERS = [
    ("PodSandboxConfig", "metadata", 1),
    ("PodSandboxConfig", "labels", 6),
    ("PodSandboxConfig", "annotations", 7),
    ("PodSandboxConfig", "linux", 8),
    ("LinuxSandboxSecurityContext", "namespace_options", 1),
    ("PodSandboxStatus", "network", 5),
    ("PodSandboxStatus", "labels", 7),
    ("PodSandboxStatus", "runtime_handler", 9),
    ("PodSandboxNetworkStatus", "additional_ips", 2),
    ("PodSandboxStatusResponse", "info", 2),
    ("PodSandbox", "runtime_handler", 7),
    ("RunPodSandboxRequest", "runtime_handler", 2),
    ("StatusResponse", "info", 2),
]


def test_field_numbers_match_cri_api() -> None:
    for message, field, number in NUMBERS:
        assert pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number == number, (message, field)
    assert pb.DESCRIPTOR.package == "runtime.v1"  # gRPC method paths are /runtime.v1.RuntimeService/...
    assert pb.SANDBOX_NOTREADY == 1


def test_cri_stubs_are_checked_against_the_proto(tmp_path: Path) -> None:
    proto = (REPO / "proto" / "vhostplug_testsupport" / "criapi" / "api.proto").read_text()
    assert "k8s.io/cri-api v0.25.0" in proto and "Apache License, Version 2.0" in proto
    gen = runpy.run_path(str(REPO / "scripts" / "gen_protos.py"))
    files = {str(f) for f in gen["generate"](tmp_path)}
    assert {f"vhostplug_testsupport/criapi/api{s}" for s in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")} <= files
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stdout + out.stderr
