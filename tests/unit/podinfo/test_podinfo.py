"""`vhostplug podinfo` end to end on fake pod roots: every source, merging, DPDK args, waiting, errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vhostplug.podinfo import Places, PodInterface, dpdk_args, find
from vhostplug.podinfo.goquote import quote
from vhostplug.podinfo.main import main

FIXTURES = Path(__file__).parent / "fixtures"
CID = "0123456789abcdef" * 4
OTHER = "f" * 64


def vhu(mode: str, path: str) -> dict[str, object]:
    return {"type": "vhost-user", "version": "1.1.0", "vhost-user": {"mode": mode, "path": path}}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_kubevirt_network_info(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = {
        "interfaces": [
            {"network": "dpdk-net", "deviceInfo": vhu("server", "/var/run/vhostplug/dev-1/vhu.sock"), "mac": "02:aa"},
            {"network": "plain", "mac": "02:bb"},
        ]
    }
    write(root / "etc/podinfo/network-info", json.dumps(info))
    rc, out, _ = run(capsys, "--root", str(root))
    assert rc == 0
    assert json.loads(out) == [
        {"name": "dpdk-net", "type": "vhost-user", "mode": "server", "path": "/var/run/vhostplug/dev-1/vhu.sock",
         "mac": "02:aa"}
    ]  # fmt: skip


def test_annotations_fixture_json_and_dpdk_args(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / "annotations", write(root / "etc/podnetinfo/annotations", ""))
    rc, out, err = run(capsys, "--root", str(root))
    assert rc == 0, err
    assert json.loads(out) == [
        {"name": "net1", "type": "vhost-user", "mode": "server", "path": "/var/run/vhostplug/dev-07/vhu.sock",
         "mac": "02:00:00:aa:bb:01"},
        {"name": "net2", "type": "vhost-user", "mode": "client", "path": '/var/run/vhost=user/café "q"\\x.sock',
         "mac": "02:00:00:aa:bb:02"},
        {"name": "net3", "type": "vdpa", "mode": None, "path": "/dev/vhost-vdpa-1", "mac": "02:00:00:aa:bb:03"},
    ]  # fmt: skip
    rc, out, _ = run(capsys, "--root", str(root), "--dpdk-args", "--interface", "net1", "--interface", "net3")
    assert rc == 0
    assert out == (
        "--vdev net_virtio_user0,path=/var/run/vhostplug/dev-07/vhu.sock,server=1,packed_vq=1\n"
        "--vdev virtio_user1,path=/dev/vhost-vdpa-1\n"
    )


def test_dpdk_args_exact_client_and_server() -> None:
    ifaces = [
        PodInterface("net1", "vhost-user", "/run/a/vhu.sock", "server"),
        PodInterface("net2", "vhost-user", "/var/run/vhostuser/vhu9c9cc8f5-88", "client"),
        PodInterface("net3", "vdpa", "/dev/vhost-vdpa-0", driver="virtio"),
        PodInterface("net4", "vdpa", "/dev/vhost-vdpa-2", driver="vhost"),
    ]
    assert dpdk_args(ifaces) == [
        "--vdev",
        "net_virtio_user0,path=/run/a/vhu.sock,server=1,packed_vq=1",
        "--vdev",
        "net_virtio_user1,path=/var/run/vhostuser/vhu9c9cc8f5-88,packed_vq=1",
        "--vdev",
        "virtio_user2,path=/dev/vhost-vdpa-2",
    ]
    # split rings on request (a switch without packed rings negotiates them anyway)
    assert dpdk_args(ifaces[:2], split_rings=True)[1::2] == [
        "net_virtio_user0,path=/run/a/vhu.sock,server=1",
        "net_virtio_user1,path=/var/run/vhostuser/vhu9c9cc8f5-88",
    ]


def test_network_status_given_directly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = [
        {"name": "k/eth0", "interface": "eth0", "default": True},
        {"name": "ns/vhu", "interface": "net1", "mac": "02:01", "device-info": vhu("client", "/s/vhu1")},
    ]
    f = write(tmp_path / "ns.json", json.dumps(status))
    rc, out, _ = run(capsys, "--root", str(tmp_path / "empty"), "--network-status", str(f), "--dpdk-args")
    assert (rc, out) == (0, "--vdev net_virtio_user0,path=/s/vhu1,packed_vq=1\n")
    rc, out, _ = run(capsys, "--root", str(tmp_path / "empty"), "--network-status", json.dumps(status))
    assert rc == 0 and json.loads(out)[0]["name"] == "net1"


def test_kuryr_config_files_by_container_id(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root / "proc/self/mountinfo", f"1 0 8:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw - x y\n")
    folder = root / "var/run/vhostuser"
    write(folder / f"{CID}-eth0", json.dumps({"vhostname": "vhu9c9cc8f5-88", "vhostmac": "fa:16:3e:ef:b0:ed",
                                              "mode": "client"}))  # fmt: skip
    # another pod's file in the same shared folder must not be picked
    write(folder / f"{OTHER}-eth0", json.dumps({"vhostname": "vhuother", "vhostmac": "fa:16", "mode": "client"}))
    rc, out, _ = run(capsys, "--root", str(root))
    assert rc == 0
    assert json.loads(out) == [
        {"name": "eth0", "type": "vhost-user", "mode": "client", "path": "/var/run/vhostuser/vhu9c9cc8f5-88",
         "mac": "fa:16:3e:ef:b0:ed"}
    ]  # fmt: skip


def test_own_device_folders_need_no_container_id(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = root / "var/run/vhostplug/dev-03"
    write(dev / f"{CID}-net1", json.dumps({"vhostname": "vhu.sock", "vhostmac": "02:03", "mode": "server"}))
    write(dev / "README", "not json")
    rc, out, err = run(capsys, "--root", str(root), "--dpdk-args")
    assert (rc, out) == (0, "--vdev net_virtio_user0,path=/var/run/vhostplug/dev-03/vhu.sock,server=1,packed_vq=1\n")
    assert "warning" not in err


def test_sources_merge_without_duplicates(root: Path) -> None:
    write(root / "etc/podinfo/network-info", "")  # KubeVirt writes it empty at first
    path = "/var/run/vhostplug/dev-03/vhu.sock"
    status = json.dumps([{"interface": "net1", "mac": "02:03", "device-info": vhu("server", path)}])
    write(root / "etc/podnetinfo/annotations", f"k8s.v1.cni.cncf.io/network-status={quote(status)}\n")
    write(root / "var/run/vhostplug/dev-03/x-net1", json.dumps({"vhostname": "vhu.sock", "mode": "server"}))
    found = find(Places(root=root))
    assert [(i.name, i.path) for i in found.interfaces] == [("net1", path)]
    assert found.interfaces[0].source.endswith("[k8s.v1.cni.cncf.io/network-status]")
    assert found.problems == []


def test_nothing_found_lists_every_place(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--root", str(root))
    assert rc == 1 and out == ""
    assert "no vhost-user or vdpa interfaces found" in err
    for place in (
        "etc/podinfo/network-info",
        "etc/podnetinfo/annotations",
        "proc/self/mountinfo",
        "proc/self/cgroup",
        "var/run/vhostuser (skipped: no container ID found)",
        "var/run/vhostplug/*/",
        "var/run/kubernetes.io/dra-device-attributes/*/<claim>/<request>/vhostuser.vhostplug.io-metadata.json",
    ):
        assert f"{root}/{place}" in err, place


def test_malformed_sources_are_warnings(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root / "etc/podinfo/network-info", "{not json")
    write(root / "etc/podnetinfo/annotations", 'k8s.v1.cni.cncf.io/network-status="[{\\"device-info\\": 1}"\n')
    ok = json.dumps([{"interface": "net9", "device-info": vhu("client", "/x/y")}])
    rc, out, err = run(capsys, "--root", str(root), "--network-status", ok)
    assert rc == 0 and json.loads(out)[0]["name"] == "net9"
    assert "network-info: cannot read" in err
    assert "network-status]: cannot read" in err


def test_bad_mode_is_reported(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = json.dumps([{"interface": "net1", "device-info": vhu("both", "/x/y")}])
    rc, _, err = run(capsys, "--root", str(root), "--network-status", bad)
    assert rc == 1
    assert "mode must be server or client, not 'both'" in err


def test_wait_times_out_with_clear_error(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = json.dumps([{"interface": "net1", "device-info": vhu("client", "/nowhere/vhu.sock")}])
    t0 = time.monotonic()
    rc, out, err = run(capsys, "--root", str(root), "--network-status", status, "--wait", "0.5", "--interval", "0.05")
    elapsed = time.monotonic() - t0
    assert rc == 1 and out == ""
    assert 0.45 <= elapsed < 3
    assert "timed out after 0.5s waiting for" in err
    assert "net1: /nowhere/vhu.sock does not exist" in err


def test_wait_nothing_found_times_out(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "--root", str(root), "--wait", "0.3", "--interval", "0.05")
    assert rc == 1
    assert "found after waiting 0.3s" in err


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    d = Path(f"/tmp/vhp-pi-{os.getpid()}")
    d.mkdir(exist_ok=True)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_wait_for_client_socket_appearing(sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sock_dir / "vhu.sock"
    status = json.dumps([{"interface": "net1", "device-info": vhu("client", str(path))}])
    server = socket.socket(socket.AF_UNIX)

    def later() -> None:
        time.sleep(0.3)
        server.bind(str(path))

    t = threading.Thread(target=later)
    t.start()
    try:
        t0 = time.monotonic()
        rc, out, err = run(capsys, "--network-status", status, "--wait", "10", "--interval", "0.05", "--dpdk-args",
                           "--socket-dir", str(sock_dir / "none"))  # fmt: skip
        assert rc == 0, err
        assert 0.25 <= time.monotonic() - t0 < 5
        assert out == f"--vdev net_virtio_user0,path={path},packed_vq=1\n"
    finally:
        t.join()
        server.close()


def test_wait_server_mode_only_needs_the_folder(sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = json.dumps([{"interface": "net1", "device-info": vhu("server", str(sock_dir / "not-yet.sock"))}])
    rc, out, _ = run(capsys, "--network-status", status, "--wait", "2", "--socket-dir", str(sock_dir / "none"))
    assert rc == 0 and json.loads(out)[0]["mode"] == "server"
    gone = json.dumps([{"interface": "net1", "device-info": vhu("server", str(sock_dir / "missing/x.sock"))}])
    rc, _, err = run(capsys, "--network-status", gone, "--wait", "0.2", "--socket-dir", str(sock_dir / "none"))
    assert rc == 1 and "does not exist (server mode" in err


def test_vhostplug_podinfo_command_runs_it(root: Path) -> None:
    status = json.dumps([{"interface": "net1", "device-info": vhu("server", "/a/b.sock")}])
    exe = Path(sys.executable).parent / "vhostplug"
    proc = subprocess.run(
        [str(exe), "podinfo", "--root", str(root), "--network-status", status, "--dpdk-args"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "--vdev net_virtio_user0,path=/a/b.sock,server=1,packed_vq=1\n"), (
        proc.stderr
    )
    bad = subprocess.run([str(exe), "podinfo", "--no-such"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    mod = subprocess.run(
        [sys.executable, "-m", "vhostplug.podinfo", "--root", str(root), "--network-status", status, "--dpdk-args"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (mod.returncode, mod.stdout) == (0, proc.stdout)


def test_podinfo_imports_only_the_standard_library() -> None:
    code = (
        "import sys; import vhostplug.podinfo, vhostplug.podinfo.main; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'typer','rich','lxml','pydantic','grpc','ovsdbapp','yaml','click'} or "
        "(m.startswith('vhostplug.') and not m.startswith('vhostplug.podinfo'))); print(bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_dra_device_metadata(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A port claimed through DRA: the KEP-5304 metadata of our driver names the socket and the app's role; other
    drivers' files and an empty (not yet written) file are not interfaces, a bad one is a warning."""
    from vhostplug.podinfo import devicemetadata as dm

    base = root / dm.CONTAINER_ROOT.lstrip("/")

    def meta(claim_dir: str, request: str, driver: str, **attrs: object) -> None:
        dev = dm.Device(driver, "node-a", "vhu-br-0", {k: dm.attribute(v) for k, v in attrs.items()})  # type: ignore[arg-type]
        text = dm.encode(dm.Metadata("ns", "c", "uid", 1, None, {request: [dev]}))
        write(base / claim_dir / request / f"{driver}-metadata.json", text)

    sock = "/var/run/vhostplug/dra/resourceclaimtemplates/vhu/port/vhu.sock"
    meta("resourceclaimtemplates/vhu", "port", dm.VHOSTPLUG_DRIVER, **{"vhost-user-path": sock, "mtu": 9000})
    meta("resourceclaims/gpu", "g", "gpu.example.com", model="x")
    write(base / "resourceclaims/later/port" / f"{dm.VHOSTPLUG_DRIVER}-metadata.json", "")
    meta("resourceclaims/bad", "port", dm.VHOSTPLUG_DRIVER, **{"vhost-user-path": "/s.sock"})
    found = find(Places(root=root, container_ids=()))
    assert [(i.name, i.path, i.mode) for i in found.interfaces] == [("vhu/port", sock, "server")]
    assert any("no mtu attribute" in p for p in found.problems)
    rc, out, _ = run(capsys, "--root", str(root), "--dpdk-args")
    assert rc == 0 and f"path={sock},server=1" in out
