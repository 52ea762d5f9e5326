"""The CNI side of a vDPA attachment: the result of ADD in each spec version, and the attach steps' errors as CNI
error codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vhostplug.cni.spec import DATAPLANE_FAILURE, INVALID_CONFIG, IO_FAILURE, CniError
from vhostplug.cni.vdpa import cni_errors, result
from vhostplug.vdpa.attach import (
    Added,
    VdpaDeviceError,
    VdpaError,
    VdpaInputError,
    VdpaRequest,
    VdpaRestoreError,
)
from vhostplug.vdpa.discovery import VdpaDevice
from vhostplug.vdpa.sysfs import VdpaTarget

REQ = VdpaRequest("net", "cid", "net1", "/var/run/netns/p", "vdpa0", "br-int")
IPAM = {"ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}], "routes": [{"dst": "0.0.0.0/0"}]}


def added(driver: str) -> Added:
    dev = VdpaDevice(
        "vdpa0",
        driver,
        Path("/dev/vhost-vdpa-0"),
        chardev="vhost-vdpa-0" if driver == "vhost" else None,
        netdev="eth5" if driver == "virtio" else None,
        pci_address="0000:65:00.2",
    )
    return Added(VdpaTarget(dev, 0, "ens1f0_0", None), "02:00:00:00:00:01", 1400, "net1", "aa:bb:cc:dd:ee:ff")


def test_virtio_result_lists_representor_then_pod_interface() -> None:
    out = result("1.1.0", REQ, added("virtio"), IPAM)
    assert out["interfaces"] == [
        {"name": "ens1f0_0", "mac": "aa:bb:cc:dd:ee:ff"},
        {
            "name": "net1",
            "mac": "02:00:00:00:00:01",
            "sandbox": "/var/run/netns/p",
            "pciID": "0000:65:00.2",
            "mtu": 1400,
        },
    ]
    assert out["ips"] == [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1}]
    assert out["routes"] == [{"dst": "0.0.0.0/0"}]


def test_vhost_result_carries_the_char_device_in_1_1_only() -> None:
    assert result("1.1.0", REQ, added("vhost"), {})["interfaces"][1]["socketPath"] == "/dev/vhost-vdpa-0"
    pod = result("1.0.0", REQ, added("vhost"), {})["interfaces"][1]
    assert pod == {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p"}
    assert result("0.4.0", REQ, added("virtio"), IPAM)["ips"][0]["version"] == "4"


@pytest.mark.parametrize(
    ("error", "code"),
    [(VdpaInputError, INVALID_CONFIG), (VdpaDeviceError, DATAPLANE_FAILURE), (VdpaRestoreError, IO_FAILURE)],
)
def test_each_attach_error_is_answered_with_its_cni_code(error: type[VdpaError], code: int) -> None:
    with pytest.raises(CniError) as err, cni_errors():
        raise error("what went wrong", "what to do")
    assert (err.value.code, err.value.msg, err.value.details) == (code, "what went wrong", "what to do")
