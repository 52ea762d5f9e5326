"""The committed DRA and plugin registration stubs match their .proto files, and the wire names are kubelet's."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO
from vhostplug.dra.api.pluginregistration import api_pb2 as reg
from vhostplug.dra.api.v1 import api_pb2 as v1
from vhostplug.dra.api.v1beta1 import api_pb2 as v1beta1


def test_generated_stubs_are_fresh() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _num(msg: type, field: str) -> int:
    return int(msg.DESCRIPTOR.fields_by_name[field].number)  # type: ignore[attr-defined]


def test_dra_service_names_and_field_numbers_match_kubelet() -> None:
    for mod, version in ((v1, "v1"), (v1beta1, "v1beta1")):
        assert mod.DESCRIPTOR.package == f"k8s.io.kubelet.pkg.apis.dra.{version}"
        service = mod.DESCRIPTOR.services_by_name["DRAPlugin"]
        assert service.full_name == f"k8s.io.kubelet.pkg.apis.dra.{version}.DRAPlugin"
        assert [m.name for m in service.methods] == ["NodePrepareResources", "NodeUnprepareResources"]
        assert _num(mod.Claim, "namespace") == 1
        assert _num(mod.Claim, "uid") == 2
        assert _num(mod.Claim, "name") == 3
        assert _num(mod.Device, "request_names") == 1
        assert _num(mod.Device, "pool_name") == 2
        assert _num(mod.Device, "device_name") == 3
        assert _num(mod.Device, "cdi_device_ids") == 4
        assert _num(mod.NodePrepareResourceResponse, "error") == 2
        assert _num(mod.NodeUnprepareResourceResponse, "error") == 1
    assert _num(v1.Device, "share_id") == 5
    assert "share_id" not in v1beta1.Device.DESCRIPTOR.fields_by_name


def test_registration_matches_kubelets_plugin_watcher() -> None:
    assert reg.DESCRIPTOR.package == "pluginregistration"
    service = reg.DESCRIPTOR.services_by_name["Registration"]
    assert [m.name for m in service.methods] == ["GetInfo", "NotifyRegistrationStatus"]
    assert _num(reg.PluginInfo, "type") == 1
    assert _num(reg.PluginInfo, "name") == 2
    assert _num(reg.PluginInfo, "endpoint") == 3
    assert _num(reg.PluginInfo, "supported_versions") == 4
    assert _num(reg.RegistrationStatus, "plugin_registered") == 1
    assert _num(reg.RegistrationStatus, "error") == 2
