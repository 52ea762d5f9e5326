"""CNI spec helpers: version negotiation, CNI_ARGS, container ID and ifname checks, result shapes."""

from __future__ import annotations

import pytest

from vhostplug.cni import spec
from vhostplug.cni.spec import CniEnv, CniError


@pytest.mark.parametrize(
    ("version", "versions", "expect"),
    [
        ("1.1.0", None, "1.1.0"),
        ("0.4.0", None, "0.4.0"),
        ("0.3.1", None, "0.3.1"),
        ("0.1.0", None, "0.1.0"),
        (None, ["0.2.0", "0.3.1"], "0.3.1"),
        ("1.0.0", ["0.4.0", "1.0.0", "2.0.0"], "1.0.0"),
        (None, ["1.1.0", "0.4.0"], "1.1.0"),
    ],
)
def test_negotiate(version: str | None, versions: list[str] | None, expect: str) -> None:
    assert spec.negotiate(version, versions) == expect


@pytest.mark.parametrize(
    ("version", "versions", "code"), [("0.3.2", None, 1), ("2.0.0", None, 1), (None, None, 7), (None, ["0.5.0"], 1)]
)
def test_negotiate_refuses(version: str | None, versions: list[str] | None, code: int) -> None:
    with pytest.raises(CniError) as err:
        spec.negotiate(version, versions)
    assert err.value.code == code


def test_cni_args_keep_equals_in_values() -> None:
    assert spec.parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=a=b;;X=") == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAME": "a=b",
        "X": "",
    }
    with pytest.raises(CniError) as err:
        spec.parse_cni_args("novalue")
    assert err.value.code == 4


@pytest.mark.parametrize("cid", ["a/b", "..", "a..b", "a\0b", "-x", "", "x" * 257, "a b"])
def test_bad_container_ids(cid: str) -> None:
    with pytest.raises(CniError) as err:
        spec.check_container_id(cid)
    assert err.value.code == 4


@pytest.mark.parametrize("ifname", ["", ".", "..", "a/b", "a:b", "a b", "a\0", "x" * 16, "é" * 8])
def test_bad_ifnames(ifname: str) -> None:
    with pytest.raises(CniError):
        spec.check_ifname(ifname)


def test_good_names_pass() -> None:
    assert spec.check_container_id("0123abcdef" * 6 + "abcd") == "0123abcdef" * 6 + "abcd"
    assert spec.check_ifname("net1") == "net1"
    assert spec.check_ifname("x" * 15) == "x" * 15


def test_env_rules_per_verb() -> None:
    assert CniEnv.from_env({"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "net1"}).netns == ""
    with pytest.raises(CniError, match="CNI_NETNS is required"):
        CniEnv.from_env({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_IFNAME": "net1"})
    assert CniEnv.from_env({"CNI_COMMAND": "STATUS"}).container_id == ""
    with pytest.raises(CniError, match="CNI_COMMAND"):
        CniEnv.from_env({"CNI_COMMAND": "FROB"})
    env = CniEnv.from_env({"CNI_COMMAND": "GC", "CNI_PATH": "/a::/b"})
    assert env.path == ("/a", "/b")


def test_result_shapes_by_version() -> None:
    v11 = spec.interface_entry("1.1.0", "net1", "02:00:00:00:00:01", "/ns", "/s/vhu.sock", 9000)
    assert v11 == {
        "name": "net1",
        "mac": "02:00:00:00:00:01",
        "sandbox": "/ns",
        "socketPath": "/s/vhu.sock",
        "mtu": 9000,
    }
    v10 = spec.interface_entry("1.0.0", "net1", "02:00:00:00:00:01", "/ns", "/s/vhu.sock", 9000)
    assert "socketPath" not in v10 and "mtu" not in v10
    ips = [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}, {"address": "fd00::2/64", "version": "6"}]
    assert [ip["version"] for ip in spec.convert_ips("0.4.0", ips)] == ["4", "6"]
    assert all("version" not in ip and ip["interface"] == 0 for ip in spec.convert_ips("1.1.0", ips))


def test_error_json() -> None:
    err = CniError(7, "bad", "because")
    assert err.to_json("1.0.0") == {"cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "because"}
    assert "details" not in CniError(4, "x").to_json("1.1.0")


def test_unknown_version_names_every_supported_one() -> None:
    with pytest.raises(CniError) as err:
        spec.negotiate("0.9.0", None)
    assert err.value.code == 1
    assert all(v in err.value.details for v in spec.SUPPORTED_VERSIONS)


@pytest.mark.parametrize(
    ("command", "version", "allowed"),
    [
        ("CHECK", "0.3.1", False),
        ("CHECK", "0.4.0", True),
        ("STATUS", "1.0.0", False),
        ("STATUS", "1.1.0", True),
        ("GC", "0.4.0", False),
        ("ADD", "0.1.0", True),
        ("DEL", "0.2.0", True),
    ],
)
def test_require_verb(command: str, version: str, allowed: bool) -> None:
    if allowed:
        spec.require_verb(command, version)
    else:
        with pytest.raises(CniError) as err:
            spec.require_verb(command, version)
        assert err.value.code == 1 and command in err.value.msg


FULL = {
    "cniVersion": "1.1.0",
    "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/ns", "socketPath": "/s", "mtu": 9000}],
    "ips": [
        {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0},
        {"address": "10.0.1.2/24", "interface": 0},
        {"address": "fd00::2/64", "gateway": "fd00::1", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "::/0"}],
    "dns": {"nameservers": ["10.0.0.53"]},
}


def test_convert_result_to_each_version() -> None:
    assert spec.convert_result(FULL, "1.1.0") == FULL
    v10 = spec.convert_result(FULL, "1.0.0")
    assert v10["cniVersion"] == "1.0.0" and v10["interfaces"] == [
        {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/ns"}
    ]
    assert all("version" not in ip for ip in v10["ips"]) and v10["routes"] == FULL["routes"]
    for old in ("0.3.0", "0.3.1", "0.4.0"):
        r = spec.convert_result(FULL, old)
        assert r["cniVersion"] == old and [ip["version"] for ip in r["ips"]] == ["4", "4", "6"]
        assert [ip["interface"] for ip in r["ips"]] == [0, 0, 0] and "socketPath" not in r["interfaces"][0]
        assert r["dns"] == FULL["dns"]
    for oldest in ("0.1.0", "0.2.0"):
        r = spec.convert_result(FULL, oldest)
        assert r == {
            "cniVersion": oldest,
            "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]},
            "ip6": {"ip": "fd00::2/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
            "dns": FULL["dns"],
        }
    assert spec.convert_result({"cniVersion": "1.1.0", "interfaces": [], "ips": []}, "0.2.0") == {"cniVersion": "0.2.0"}
    assert FULL["interfaces"][0]["mtu"] == 9000, "the input was changed"


def test_to_current_reads_every_version() -> None:
    v02 = {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1", "routes": [{"dst": "0.0.0.0/0"}]}}
    assert spec.to_current(v02) == {
        "cniVersion": "0.2.0",
        "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    v04 = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}}
    assert spec.to_current(v04) == {"cniVersion": "0.4.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}}
    # round trip: what we convert down reads back up to the same addresses and routes
    for v in spec.SUPPORTED_VERSIONS:
        back = spec.to_current(spec.convert_result(FULL, v))
        assert [ip["address"] for ip in back["ips"]][:1] == ["10.0.0.2/24"]
        assert back.get("routes", []) == FULL["routes"]
