"""CniHandler without root and without a switch: the noop dataplane, folders under tmp_path, an IPAM plugin that is a
real executable speaking CNI on stdin/stdout. Rollback at each ADD step, DEL idempotence and DEL without a usable
netconf, GC, kuryr input, unsafe paths."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vhostplug import deviceinfo, fsutil
from vhostplug.cni.handler import CniHandler
from vhostplug.cni.planning import own_folder_name
from vhostplug.cni.policy import NodePolicy
from vhostplug.cni.verbs import HandlerOptions
from vhostplug.model import Attachment, port_name_for
from vhostplug.protocols import DataplaneError
from vhostplug_testsupport.noopdataplane import NoopDataplane

IPAM_SCRIPT = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
d = conf["ipam"]["dataDir"]
key = os.environ["CNI_CONTAINERID"] + "-" + os.environ["CNI_IFNAME"]
cmd = os.environ["CNI_COMMAND"]
if conf["ipam"].get("fail") == cmd:
    print(json.dumps({{"cniVersion": "1.0.0", "code": 11, "msg": "told to fail"}})); sys.exit(1)
if cmd == "ADD":
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, key), "w").write("lease")
    print(json.dumps({{"cniVersion": "1.0.0", "ips": [{{"address": "10.1.0.2/24"}}]}}))
elif cmd == "DEL":
    try: os.unlink(os.path.join(d, key))
    except FileNotFoundError: pass
"""


class FailingDataplane(NoopDataplane):
    """The noop dataplane, failing at one step when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_at = ""

    def attach(self, attachment: Attachment, timeout: float = 5.0, meanwhile: Any = None) -> Any:
        if self.fail_at == "attach":
            raise DataplaneError("told to fail at attach")
        return super().attach(attachment, timeout, meanwhile)

    def place_client_socket(self, attachment: Attachment, own: fsutil.Ownership, wait: float) -> None:
        if self.fail_at == "socket":
            raise DataplaneError("OVS did not create the client-mode socket")


class Node:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "s"
        self.state = tmp / "state"
        self.leases = tmp / "leases"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        plugin = self.bin / "fake-ipam"
        plugin.write_text(IPAM_SCRIPT.format(python=sys.executable))
        plugin.chmod(0o755)
        self.dp = FailingDataplane()
        own = fsutil.Ownership(os.getuid(), os.getgid())
        self.devinfo = tmp / "devinfo"
        self.policy = NodePolicy(
            socket_roots=(self.root,),
            devinfo_root=self.devinfo,
            bridges=("br-vhost", "br-int"),
            ipam_plugins=("fake-ipam",),
            kuryr_mount_points=(str(tmp / "kv"),),
        )
        options = HandlerOptions(ownership=own, state_dir=self.state, client_socket_wait=0.1, policy=self.policy)
        self.handler = CniHandler(self.dp, options)

    def allocate(self, device_id: str, mode: int = 0o751) -> Path:
        """What the device plugin's Allocate leaves: the device folder and its dp device-info file."""
        folder = self.root / device_id
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, mode)
        deviceinfo.write_dp(self.devinfo, self.policy.device_resource, device_id, {"type": "vhost-user"})
        return folder

    def conf(self, **kw: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": "1.1.0",
            "name": "net",
            "type": "vhostplug",
            "socketRoot": str(self.root),
            "containerSocketRoot": "/var/run/vhostplug",
        }
        conf.update(kw)
        return {k: v for k, v in conf.items() if v is not None}

    def ipam(self, **kw: Any) -> dict[str, Any]:
        return {"type": "fake-ipam", "dataDir": str(self.leases), **kw}

    def run(self, command: str, conf: dict[str, Any] | str, cid: str = "c1", ifname: str = "net1", **env: str):  # type: ignore[no-untyped-def]
        e = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": ifname,
            "CNI_NETNS": "/var/run/netns/x",
            "CNI_PATH": str(self.bin),
            **env,
        }
        code, out = self.handler.handle(e, json.loads(conf) if isinstance(conf, str) else conf)
        return code, json.loads(out) if out else {}

    def leftovers(self) -> list[str]:
        found = [str(p) for base in (self.root, self.state, self.leases) if base.exists() for p in base.rglob("*")]
        return found + [p.name for p in self.dp.list_ports()]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def test_add_then_del_twice_leaves_nothing(node: Node) -> None:
    conf = node.conf(ipam=node.ipam())
    code, out = node.run("ADD", conf)
    assert code == 0, out
    folder = node.root / own_folder_name("c1", "net1")
    assert out["interfaces"][0]["socketPath"] == str(folder / "vhu.sock")
    assert out["ips"][0]["address"] == "10.1.0.2/24"
    assert json.loads((folder / "c1-net1").read_text())["mode"] == "server"
    assert (node.leases / "c1-net1").exists() and len(list(node.state.iterdir())) == 1
    for _ in range(2):
        assert node.run("DEL", conf) == (0, {})
    assert node.leftovers() == []


REFUSED_AT_EACH_STEP: list[tuple[str, Callable[[Node], dict[str, Any]], int]] = [
    ("record store unwritable", lambda n: (n.state.write_text("not a folder"), n.conf(ipam=n.ipam()))[1], 5),
    ("IPAM ADD fails", lambda n: n.conf(ipam=n.ipam(fail="ADD")), 102),
    ("attach fails", lambda n: (setattr(n.dp, "fail_at", "attach"), n.conf(ipam=n.ipam()))[1], 100),
    ("client socket never made", lambda n: (setattr(n.dp, "fail_at", "socket"), n.conf(mode="client"))[1], 100),
    (
        "config file blocked",
        lambda n: ((n.root / own_folder_name("c1", "net1") / "c1-net1").mkdir(parents=True), n.conf(ipam=n.ipam()))[1],
        5,
    ),
    (
        "device-info folder is a file",
        lambda n: (
            n.devinfo.mkdir(),
            (n.devinfo / "blk").write_text("x"),
            n.conf(ipam=n.ipam(), runtimeConfig={"CNIDeviceInfoFile": str(n.devinfo / "blk" / "i.json")}),
        )[2],
        5,
    ),
]


@pytest.mark.parametrize(("what", "setup", "code"), REFUSED_AT_EACH_STEP, ids=[r[0] for r in REFUSED_AT_EACH_STEP])
def test_a_failure_at_each_add_step_rolls_everything_back(
    node: Node, what: str, setup: Callable[[Node], dict[str, Any]], code: int
) -> None:
    conf = setup(node)
    before = sorted(node.leftovers())
    rc, out = node.run("ADD", conf)
    assert rc == 1 and out["code"] == code, out
    assert node.dp.list_ports() == [], what
    assert not (node.leases / "c1-net1").exists(), f"{what}: the address was not released"
    assert not node.state.is_dir() or list(node.state.iterdir()) == [], f"{what}: a record was left"
    in_root = [p for p in node.leftovers() if p.startswith(str(node.root))]
    assert in_root == [p for p in before if p.startswith(str(node.root))], f"{what}: the socket root changed"


def test_del_without_a_usable_netconf_finds_everything_from_the_record(node: Node) -> None:
    conf = node.conf(ipam=node.ipam(), runtimeConfig={"deviceID": "dev1"})
    node.allocate("dev1")
    assert node.run("ADD", conf)[0] == 0
    assert stat.S_IMODE(os.lstat(node.root / "dev1").st_mode) == 0o770
    for broken in ({"name": "net", "promiscMode": True, "mode": "sideways"}, {}):
        assert node.run("DEL", broken, CNI_NETNS="") == (0, {})
    assert node.dp.list_ports() == [] and not (node.leases / "c1-net1").exists()
    # the device folder was not the agent's: it stays, with its original mode back
    assert stat.S_IMODE(os.lstat(node.root / "dev1").st_mode) == 0o751
    assert list((node.root / "dev1").iterdir()) == []


def test_del_of_an_attachment_never_added_touches_no_file(node: Node) -> None:
    folder = node.root / "ab-net9"
    folder.mkdir(parents=True)
    (folder / "data").write_text("keep")
    assert node.run("DEL", node.conf(), cid="ab", ifname="net9") == (0, {})
    assert (folder / "data").read_text() == "keep"


def test_two_containers_sharing_a_12_character_prefix_do_not_share_a_folder(node: Node) -> None:
    a, b = "0123456789ab" + "a" * 52, "0123456789ab" + "b" * 52
    outs = [node.run("ADD", node.conf(), cid=c)[1]["interfaces"][0]["socketPath"] for c in (a, b)]
    assert outs[0] != outs[1]
    assert node.run("DEL", node.conf(), cid=a)[0] == 0
    assert Path(outs[1]).parent.is_dir(), "DEL of the first removed the second's folder"
    assert node.run("DEL", node.conf(), cid=b)[0] == 0
    assert node.leftovers() == []


def test_gc_removes_what_it_is_not_asked_to_keep_even_with_a_broken_config(node: Node) -> None:
    conf = node.conf(ipam=node.ipam())
    for cid in ("keep", "drop"):
        assert node.run("ADD", conf, cid=cid)[0] == 0
    assert node.run("ADD", node.conf(name="other"), cid="oth")[0] == 0
    gc = {
        "cniVersion": "1.1.0",
        "name": "net",
        "mode": "sideways",
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "net1"}],
    }
    assert node.run("GC", gc) == (0, {})
    names = {p.name for p in node.dp.list_ports()}
    assert names == {port_name_for("keep", "net1"), port_name_for("oth", "net1")}
    assert sorted(p.name for p in node.leases.iterdir()) == ["keep-net1"]
    assert not (node.root / own_folder_name("drop", "net1")).exists()
    assert node.run("GC", {"cniVersion": "1.1.0"})[1]["code"] == 7  # which network, then?


def test_check_still_reports_config_errors(node: Node) -> None:
    code, out = node.run("ADD", node.conf())
    assert code == 0
    rc, err = node.run("CHECK", node.conf(mode="sideways", prevResult=out))
    assert rc == 1 and err["code"] == 7 and "mode" in err["details"]


def test_kuryr_binding_goes_through_to_attachment(node: Node, tmp_path: Path) -> None:
    mount = tmp_path / "kv"
    mount.mkdir()
    port_id = "9c9cc8f5-8888-4444-aaaa-0123456789ab"
    neutron = {
        "id": port_id,
        "mac_address": "fa:16:3e:ef:b0:ed",
        "binding:vif_type": "vhostuser",
        "binding:vif_details": {"vhostuser_mode": "client", "vhostuser_socket": f"{mount}/vhu9c9cc8f5-88"},
    }
    conf = node.conf(kuryr={"mountPoint": str(mount), "neutronPortBinding": neutron})
    code, out = node.run("ADD", conf)
    assert code == 0, out
    port = node.dp.get_port("vhu9c9cc8f5-88")
    assert port is not None and port.external_ids["kuryr-port-id"] == port_id
    assert port.external_ids["attached-mac"] == "fa:16:3e:ef:b0:ed"
    assert json.loads((mount / "c1-net1").read_text())["vhostmac"] == "fa:16:3e:ef:b0:ed"
    # DEL with the kuryr input gone from the config still finds the Neutron-named port through the record
    assert node.run("DEL", node.conf()) == (0, {})
    assert node.dp.list_ports() == [] and mount.is_dir() and list(mount.iterdir()) == []


def test_a_symlink_where_the_folder_should_be_is_refused_and_left(node: Node, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    node.root.mkdir()
    (node.root / "evil").symlink_to(victim)
    deviceinfo.write_dp(node.devinfo, node.policy.device_resource, "evil", {"type": "vhost-user"})
    rc, out = node.run("ADD", node.conf(runtimeConfig={"deviceID": "evil"}))
    assert rc == 1 and out["code"] == 101 and "symlink" in out["msg"]
    assert (node.root / "evil").is_symlink() and list(victim.iterdir()) == []
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700 and node.dp.list_ports() == []


def test_del_refuses_a_stored_folder_swapped_for_a_symlink(node: Node, tmp_path: Path) -> None:
    assert node.run("ADD", node.conf())[0] == 0
    folder = node.root / own_folder_name("c1", "net1")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "c1-net1").write_text("victim")
    os.rename(folder, tmp_path / "moved")
    folder.symlink_to(victim)
    rc, out = node.run("DEL", node.conf())
    assert rc == 1 and out["code"] == 101 and str(folder) in out["msg"]
    assert (victim / "c1-net1").read_text() == "victim"
    folder.unlink()
    assert node.run("DEL", node.conf()) == (0, {})


def test_check_and_re_add_after_the_device_plugin_marks_went_away(node: Node) -> None:
    """The device plugin removes its dp files when the agent stops: the attachment's record still vouches for the
    device it was given, so CHECK and a repeated ADD keep working; a new container still needs an allocation."""
    conf = node.conf(runtimeConfig={"deviceID": "dev2"})
    node.allocate("dev2")
    code, out = node.run("ADD", conf)
    assert code == 0, out
    for marker in (node.devinfo / "dp").iterdir():
        marker.unlink()
    assert node.run("CHECK", {**conf, "prevResult": out}) == (0, {})
    code, again = node.run("ADD", conf)
    assert code == 0 and again["interfaces"] == out["interfaces"], again
    code, err = node.run("ADD", conf, cid="other")
    assert code == 1 and err["code"] == 7 and "deviceID" in err["msg"], err
    assert node.run("DEL", conf) == (0, {})
