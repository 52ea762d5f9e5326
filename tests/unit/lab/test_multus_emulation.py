"""The lab's Multus step says what real Multus 4.0.x says to a delegate: CNI 1.0.0, the device ID top-level, as
pciBusID and in runtimeConfig with the device-info file Multus names, and IgnoreUnknown twice in CNI_ARGS."""

from __future__ import annotations

from pathlib import Path

from vhostplug.lab.multus import CniCall, devinfo_path, netconf
from vhostplug.lab.paths import LabPaths


def test_delegate_netconf_and_env(tmp_path: Path) -> None:
    paths = LabPaths(tmp_path)
    cid = "a" * 64
    info = devinfo_path(paths, "vhostplug-pods", cid)
    conf = netconf("vhostplug-pods", paths, "vhpabc", "vu0a1b2c-03", info, "10.56.0.0/24")
    assert conf["cniVersion"] == "1.0.0"
    assert conf["deviceID"] == conf["pciBusID"] == conf["runtimeConfig"]["deviceID"] == "vu0a1b2c-03"
    assert (
        conf["runtimeConfig"]["CNIDeviceInfoFile"]
        == f"/var/run/k8s.cni.cncf.io/devinfo/cni/demo-vhostplug-pods-{cid}_net1"
    )
    env = CniCall("pod", "p", "uid-1", cid, "/var/run/netns/x", "vu0a1b2c-03", conf).cni_env("ADD", "/bin")
    args = [kv.split("=", 1) for kv in env["CNI_ARGS"].split(";")]
    assert [v for k, v in args if k == "IgnoreUnknown"] == ["true", "1"]
    assert [v for k, v in args if k == "K8S_POD_NAME"] == ["p", "p"]
