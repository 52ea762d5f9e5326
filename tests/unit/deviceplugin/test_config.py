"""Device plugin config: defaults, camelCase keys, and a table of bad configs with errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vhostplug.deviceplugin.config import ConfigError, load_config


def test_defaults() -> None:
    cfg = load_config({})
    assert cfg.vhostuser.count == 64
    assert cfg.vhostuser.resource_name == "vhostplug.io/vhostuser"
    assert cfg.vhostuser.mode == 0o770
    ids = cfg.vhostuser.device_ids()
    assert ids[0] == "vu00" and ids[-1] == "vu63" and len(set(ids)) == 64
    assert cfg.dataplane.enabled and cfg.dataplane.resource_name == "vhostplug.io/dataplane"
    assert cfg.vdpa.sysfs_root == Path("/sys") and cfg.vdpa.pools == []


def test_camel_case_keys() -> None:
    cfg = load_config(
        {
            "healthSeconds": 0.5,
            "vhostuser": {"count": 3, "resourceName": "example.com/vu", "owner": 0, "group": "root", "mode": "0750"},
            "dataplane": {"enabled": False},
            "vdpa": {
                "sysfsRoot": "/tmp/sys",
                "devRoot": "/tmp/dev",
                "rescanSeconds": 2,
                "pools": [
                    {
                        "resourceName": "vhostplug.io/vdpa_mlx",
                        "selectors": {"vendors": ["0x15B3"], "vdpaType": "vhost", "pfNames": ["ens1f0"]},
                    }
                ],
            },
        }
    )
    assert cfg.health_seconds == 0.5
    assert cfg.vhostuser.device_ids() == ["vu00", "vu01", "vu02"]
    assert cfg.vhostuser.mode == 0o750
    assert not cfg.dataplane.enabled
    assert cfg.vdpa.pools[0].selectors.vendors == ["15b3"]
    assert cfg.vdpa.pools[0].selectors.vdpa_type == "vhost"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"vhostuser": {"cout": 3}}, "vhostuser.cout: unknown key"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"vhostuser": {"mode": "0999"}}, "vhostuser.mode"),
    ({"vhostuser": {"mode": "rwx"}}, "vhostuser.mode"),
    ({"vhostuser": {"mode": 0o7777}}, "vhostuser.mode"),
    ({"vhostuser": {"count": 0}}, "vhostuser.count"),
    ({"vhostuser": {"count": "many"}}, "vhostuser.count"),
    ({"vhostuser": {"resourceName": "vhostuser"}}, "vhostuser.resourceName"),
    ({"vhostuser": {"resourceName": "Vhostplug.IO/x"}}, "vhostuser.resourceName"),
    ({"vhostuser": {"resourceName": "kubernetes.io/x"}}, "reserved"),
    ({"vhostuser": {"owner": "bad/name"}}, "vhostuser.owner"),
    ({"vhostuser": {"idPrefix": "../x"}}, "vhostuser.idPrefix"),
    ({"healthSeconds": 0}, "healthSeconds"),
    ({"dataplane": {"enabled": "maybe"}}, "dataplane.enabled"),
    ({"vdpa": {"rescanSeconds": -1}}, "vdpa.rescanSeconds"),
    ({"vdpa": {"pools": [{"selectors": {}}]}}, "vdpa.pools[0].resourceName"),
    ({"vdpa": {"pools": [{"resourceName": "a.io/b", "selectors": {"vendors": ["xyz"]}}]}}, "selectors.vendors"),
    ({"vdpa": {"pools": [{"resourceName": "a.io/b", "selectors": {"vdpaType": "vfio"}}]}}, "selectors.vdpaType"),
    ({"vdpa": {"pools": [{"resourceName": "a.io/b", "selectors": {"pciAddresses": ["65:00.2"]}}]}}, "pciAddresses"),
    ({"vdpa": {"pools": [{"resourceName": "a.io/b", "selectors": {"color": "red"}}]}}, "selectors.color: unknown key"),
    ({"vdpa": {"pools": [{"resourceName": "vhostplug.io/vhostuser"}]}}, "unique"),
]


@pytest.mark.parametrize(("data", "needle"), BAD, ids=[b[1] for b in BAD])
def test_bad_config_is_rejected_naming_the_key(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(data)
    assert needle in str(err.value)


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config([1, 2])  # type: ignore[arg-type]
