"""The node policy as the agent config builds it: defaults, what a netconf may select, and the lab's own policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vhostplug.agent.config import AgentConfig, ConfigError, load
from vhostplug.cni.policy import NodePolicy, check_bridge_name
from vhostplug.cni.spec import CniError
from vhostplug.lab.multus import devinfo_path
from vhostplug.lab.stack import LabPaths, agent_config, lab_status


def test_defaults() -> None:
    p = AgentConfig().to_policy()
    assert p.socket_roots == (Path("/var/run/vhostplug"),) and p.bridges == ("br-vhost",)
    assert p.ipam_plugins == ("host-local", "static") and p.may_create_bridges and p.datapath_type == "netdev"
    assert p.socket_root(None) == Path("/var/run/vhostplug") and p.bridge(None) == "br-vhost"


@pytest.mark.parametrize(
    ("call", "key", "allowed"),
    [
        (lambda p: p.socket_root("/etc"), "socketRoot '/etc'", "/var/run/vhostplug"),
        (lambda p: p.bridge("br-other"), "bridge 'br-other'", "br-vhost"),
        (lambda p: p.ipam_plugin("dhcp"), "ipam.type 'dhcp'", "host-local, static"),
        (lambda p: p.container_socket_root("/"), "containerSocketRoot '/'", "/var/run/vhostplug"),
        (lambda p: p.devinfo_file("/etc/passwd"), "CNIDeviceInfoFile '/etc/passwd'", "k8s.cni.cncf.io/devinfo"),
        (lambda p: p.kuryr_mount_point("/"), "kuryr mountPoint '/'", "/var/cni/vhostuser"),
    ],
)
def test_a_value_outside_the_policy_is_code_7_naming_key_value_and_what_is_allowed(
    call: Any, key: str, allowed: str
) -> None:
    with pytest.raises(CniError) as err:
        call(NodePolicy())
    assert err.value.code == 7 and key in err.value.msg and allowed in err.value.details


@pytest.mark.parametrize(
    "name", [";id", "`id`", "br\u202eevil", "br\ufeff", "a b", "\u00df" * 8, "x" * 16, "", ".", "a/b"]
)
def test_bridge_names_are_ascii_and_at_most_15_bytes(name: str) -> None:
    with pytest.raises(ValueError):
        check_bridge_name(name)


def test_devinfo_file_through_a_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "devinfo"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    p = NodePolicy(devinfo_root=root)
    assert p.devinfo_file(str(root / "cni" / "a.json")) == str(root / "cni" / "a.json")
    with pytest.raises(CniError):
        p.devinfo_file(str(root / "out" / "a.json"))


def test_agent_config_refuses_bad_policy_values(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text("bridges:\n  allowed: ['br;x']\nipamPlugins: ['../x']\nsocketRoots: ['rel']\n")
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert "bridges.allowed" in str(err.value) and "ipamPlugins" in str(err.value) and "socketRoots" in str(err.value)


def test_the_lab_allows_exactly_the_bridges_it_reports(tmp_path: Path) -> None:
    class Ovs:
        endpoint = "unix:/nonexistent"
        run_dir = tmp_path

    paths = LabPaths(tmp_path)
    policy = AgentConfig.model_validate(agent_config(paths, Ovs())).to_policy()  # type: ignore[arg-type]
    status = lab_status(tmp_path)
    # pods, VMs and the vDPA representors each have their own bridge
    assert list(policy.bridges) == status["bridges"] and len(status["bridges"]) == 3
    assert str(paths.socket_root) in policy.container_socket_roots
    # device-info where a real node keeps it, under the names Multus 4.0.x gives the files
    assert policy.devinfo_root == Path("/var/run/k8s.cni.cncf.io/devinfo")
    made = devinfo_path(paths, "vhostplug-pods", "c" * 64)
    assert made.name == f"demo-vhostplug-pods-{'c' * 64}_net1"
    assert policy.devinfo_file(str(made)) == str(made)
