"""Input checks of a vDPA ADD that come before any lookup or side effect (the CNI verbs answer a VdpaInputError as
INVALID_CONFIG: tests/unit/cni/test_vdpa.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vhostplug.vdpa.attach import VdpaAttacher, VdpaInputError, VdpaPolicy, VdpaRequest
from vhostplug_testsupport.noopdataplane import NoopDataplane


@pytest.mark.parametrize("mac", ["nope", "03:00:00:00:00:01", "02:00:00:00:00", "02-00-00-00-00-01"])
def test_a_bad_or_multicast_mac_is_refused(tmp_path: Path, mac: str) -> None:
    att = VdpaAttacher(NoopDataplane(), VdpaPolicy(tmp_path / "sys", tmp_path / "dev"))
    req = VdpaRequest("n", "cid", "net1", "/var/run/netns/p", "vdpa0", "br", mac=mac)
    with pytest.raises(VdpaInputError) as err:
        att.resolve(req)
    assert "is not a unicast MAC" in err.value.msg


def test_no_device_id_names_what_to_do(tmp_path: Path) -> None:
    att = VdpaAttacher(NoopDataplane(), VdpaPolicy(tmp_path / "sys", tmp_path / "dev"))
    with pytest.raises(VdpaInputError) as err:
        att.resolve(VdpaRequest("n", "cid", "net1", "/p", None, "br"))
    assert "needs runtimeConfig.deviceID" in err.value.msg and "resourceName" in err.value.details


def test_an_unknown_device_is_invalid_config(tmp_path: Path) -> None:
    att = VdpaAttacher(NoopDataplane(), VdpaPolicy(tmp_path / "sys", tmp_path / "dev"))
    with pytest.raises(VdpaInputError) as err:
        att.resolve(VdpaRequest("n", "cid", "net1", "/p", "vdpa0", "br", mac="02:00:00:00:00:01"))
    assert "no vDPA device 'vdpa0'" in err.value.msg
