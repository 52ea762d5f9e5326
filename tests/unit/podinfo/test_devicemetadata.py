"""KEP-5304 device metadata: what the driver writes is what a consumer reads, paths as the KEP puts them."""

from __future__ import annotations

import json

import pytest

from vhostplug.podinfo import devicemetadata as dm

DRIVER = dm.VHOSTPLUG_DRIVER


def meta(**attrs: object) -> dm.Metadata:
    return dm.Metadata(
        namespace="vms",
        name="virt-launcher-vm1-xyz-net1-abcde",
        uid="0b6c1b38-2b45-4b8e-9f3c-1d2e3f4a5b6c",
        generation=1,
        pod_claim_name="net1",
        requests={"vhu": [dm.Device(DRIVER, "node-a", "br-vhost-03", {k: dm.attribute(v) for k, v in attrs.items()})]},  # type: ignore[arg-type]
    )


def test_paths_follow_the_kep() -> None:
    assert dm.relative_path(DRIVER, "net1", "vhu", from_template=True) == (
        f"resourceclaimtemplates/net1/vhu/{DRIVER}-metadata.json"
    )
    # a prioritized-list subrequest: only the top-level request names the folder
    assert dm.relative_path(DRIVER, "my-claim", "vhu/fast", from_template=False) == (
        f"resourceclaims/my-claim/vhu/{DRIVER}-metadata.json"
    )
    for bad in ("", "..", "a/b"):
        with pytest.raises(dm.MetadataError):
            dm.relative_path(DRIVER, bad, "vhu", from_template=True)


def test_round_trip_and_vhost_user() -> None:
    text = dm.encode(meta(**{"vhost-user-path": "/var/run/vhostplug/dra/net1/vhu/vhu.sock", "mtu": 9000}))
    obj = json.loads(text)
    assert obj["apiVersion"] == "metadata.resource.k8s.io/v1alpha1" and obj["kind"] == "DeviceMetadata"
    assert obj["requests"][0]["devices"][0]["attributes"]["mtu"] == {"int": 9000}
    got = dm.decode(text)
    assert got is not None and got.pod_claim_name == "net1" and got.generation == 1
    vu = dm.vhost_user(got, "vhu", DRIVER)
    assert vu == dm.VhostUser("/var/run/vhostplug/dra/net1/vhu/vhu.sock", 9000, "server")


def test_stream_first_known_version_wins_and_empty_is_not_yet() -> None:
    newer = json.dumps({"apiVersion": "metadata.resource.k8s.io/v9", "kind": "DeviceMetadata", "requests": []})
    known = dm.encode(meta(**{"vhost-user-path": "/s/vhu.sock", "mtu": 1500, "vhost-user-mode": "client"}))
    got = dm.decode(newer + "\n" + known)
    assert got is not None and dm.vhost_user(got, "vhu", DRIVER).mode == "client"
    assert dm.decode("") is None and dm.decode(" \n") is None
    with pytest.raises(dm.MetadataError, match="no DeviceMetadata"):
        dm.decode(newer)
    with pytest.raises(dm.MetadataError, match="not a stream of JSON"):
        dm.decode('{"apiVersion": ')


@pytest.mark.parametrize(
    ("attrs", "words"),
    [
        ({"mtu": 1500}, "no device of"),
        ({"vhost-user-path": "relative/vhu.sock", "mtu": 1500}, "absolute path"),
        ({"vhost-user-path": "/s/vhu.sock"}, "no mtu attribute"),
        ({"vhost-user-path": "/s/vhu.sock", "mtu": 67}, "from 68 to 9702"),
        ({"vhost-user-path": "/s/vhu.sock", "mtu": 9703}, "from 68 to 9702"),
        ({"vhost-user-path": "/s/vhu.sock", "mtu": "1500"}, "must be an int"),
        ({"vhost-user-path": "/s/vhu.sock", "mtu": 1500, "vhost-user-mode": "both"}, "'server' or 'client'"),
    ],
)
def test_bad_device_attributes_are_named(attrs: dict[str, object], words: str) -> None:
    got = dm.decode(dm.encode(meta(**attrs)))
    assert got is not None
    with pytest.raises(dm.MetadataError, match=words):
        dm.vhost_user(got, "vhu", DRIVER)


def test_other_drivers_and_requests_are_not_ours() -> None:
    got = dm.decode(dm.encode(meta(**{"vhost-user-path": "/s/vhu.sock", "mtu": 1500})))
    assert got is not None
    with pytest.raises(dm.MetadataError, match="request other"):
        dm.vhost_user(got, "other", DRIVER)
    with pytest.raises(dm.MetadataError, match=r"no device of gpu\.example\.com"):
        dm.vhost_user(got, "vhu", "gpu.example.com")
