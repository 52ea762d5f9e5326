"""The committed hooks stubs match our .proto files, and carry the exact public service paths and field numbers."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO
from vhostplug.kubevirt.hooks import info_pb2, v1alpha2_pb2, v1alpha3_pb2


def test_gen_protos_check_passes() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_field_numbers_match_kubevirt() -> None:
    info = info_pb2.InfoResult.DESCRIPTOR
    assert {f.name: f.number for f in info.fields} == {"name": 1, "hookPoints": 3, "versions": 4}
    assert {f.name: f.number for f in info_pb2.HookPoint.DESCRIPTOR.fields} == {"name": 1, "priority": 2}
    for mod in (v1alpha2_pb2, v1alpha3_pb2):
        assert {f.name: f.number for f in mod.OnDefineDomainParams.DESCRIPTOR.fields} == {"domainXML": 1, "vmi": 2}
        assert {f.name: f.number for f in mod.PreCloudInitIsoResult.DESCRIPTOR.fields} == {
            "cloudInitNoCloudSource": 1,
            "cloudInitData": 3,
        }


def test_service_full_names() -> None:
    assert info_pb2.DESCRIPTOR.services_by_name["Info"].full_name == "kubevirt.hooks.info.Info"
    v2 = v1alpha2_pb2.DESCRIPTOR.services_by_name["Callbacks"]
    v3 = v1alpha3_pb2.DESCRIPTOR.services_by_name["Callbacks"]
    assert v2.full_name == "kubevirt.hooks.v1alpha2.Callbacks"
    assert v3.full_name == "kubevirt.hooks.v1alpha3.Callbacks"
    assert "Shutdown" not in v2.methods_by_name
    assert set(v3.methods_by_name) == {"OnDefineDomain", "PreCloudInitIso", "Shutdown"}
