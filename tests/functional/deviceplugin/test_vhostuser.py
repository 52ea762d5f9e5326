"""vhostuser and dataplane resources through real gRPC: register, list, allocate, health, kubelet restart, stop."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import grpc
import pytest

from tests.functional.deviceplugin.conftest import DP, VU, Rig, make_rig, vhostuser_source
from vhostplug import deviceinfo
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb


def healthy(devs: list[pb.Device]) -> bool:
    return bool(devs) and all(d.health == "Healthy" for d in devs)


def unhealthy(devs: list[pb.Device]) -> bool:
    return bool(devs) and all(d.health == "Unhealthy" for d in devs)


def test_register_and_list(rig: Rig) -> None:
    devs = rig.kubelet.wait_for(VU, healthy, timeout=5)
    assert [d.ID for d in devs] == ["vu00", "vu01", "vu02", "vu03"]
    assert [d.ID for d in rig.kubelet.wait_for(DP, healthy, timeout=5)] == ["dataplane0"]
    assert rig.kubelet.resources() == [DP, VU]
    endpoints = {res: ep for _, res, ep in rig.kubelet.registrations}
    assert endpoints[VU] == "vhostplug.io_vhostuser.sock"
    for ep in endpoints.values():
        st = os.lstat(rig.dp_dir / ep)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
    opts = rig.kubelet.stub(VU).GetDevicePluginOptions(pb.Empty(), timeout=5)
    assert opts.get_preferred_allocation_available and not opts.pre_start_required
    pre = rig.kubelet.stub(VU).PreStartContainer(pb.PreStartContainerRequest(devices_ids=["vu00"]), timeout=5)
    assert pre == pb.PreStartContainerResponse()


@pytest.mark.root
def test_allocate_prepares_folder_mount_env_and_devinfo(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, healthy, timeout=5)
    # leftovers of a previous pod, including a symlink that points outside: emptied without following
    outside = rig.root / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    stale = rig.socket_root / "vu00"
    stale.mkdir()
    (stale / "old.sock").write_text("x")
    (stale / "sub").mkdir()
    (stale / "sub" / "f").write_text("x")
    os.symlink("../../outside", stale / "link")

    ids, resp = rig.kubelet.allocate(VU, 2)
    assert ids == ["vu00", "vu01"]
    for n, dev in enumerate(ids):
        host = rig.socket_root / dev
        st = os.lstat(host)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o770
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert os.listdir(host) == []
        cdir = f"{rig.container_root}/{dev}"
        assert resp.envs[f"VHOSTPLUG_DEVICE_{n}"] == dev
        assert resp.envs[f"VHOSTPLUG_SOCKET_DIR_{n}"] == cdir
        assert resp.envs[f"VHOSTPLUG_SOCKET_{n}"] == f"{cdir}/{deviceinfo.DEVICE_SOCKET_NAME}"
        info = json.loads((rig.devinfo / "dp" / f"vhostplug.io-vhostuser-{dev}-device.json").read_text())
        assert info == {
            "type": "vhost-user",
            "version": "1.1.0",
            "vhost-user": {"mode": "server", "path": f"{cdir}/{deviceinfo.DEVICE_SOCKET_NAME}"},
        }
    assert resp.envs["VHOSTPLUG_DEVICES"] == "vu00,vu01"
    assert [(m.host_path, m.container_path, m.read_only) for m in resp.mounts] == [
        (str(rig.socket_root / "vu00"), f"{rig.container_root}/vu00", False),
        (str(rig.socket_root / "vu01"), f"{rig.container_root}/vu01", False),
    ]
    assert (outside / "keep").read_text() == "precious"
    # kubelet now picks the next free ones
    ids2, _ = rig.kubelet.allocate(VU, 1)
    assert ids2 == ["vu02"]


@pytest.mark.root
def test_allocate_sets_configured_owner_and_mode(short_dir: Path) -> None:
    r = make_rig(short_dir, {"vhostuser": {"count": 2, "owner": "nobody", "group": 65534, "mode": "0750"}})
    try:
        r.kubelet.wait_for(VU, healthy, timeout=5)
        r.kubelet.allocate(VU, 1)
        st = os.lstat(r.socket_root / "vu00")
        assert stat.S_IMODE(st.st_mode) == 0o750
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    finally:
        r.manager.stop()
        r.kubelet.stop()


def test_symlink_at_device_folder_fails_and_target_untouched(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, healthy, timeout=5)
    target = rig.root / "target"
    target.mkdir(mode=0o755)
    (target / "data").write_text("keep me")
    os.chmod(target, 0o755)
    rig.socket_root.mkdir(exist_ok=True)
    os.symlink(target, rig.socket_root / "vu01")
    stub = rig.kubelet.stub(VU)
    with pytest.raises(grpc.RpcError) as err:
        stub.Allocate(
            pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=["vu00", "vu01"])])
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "symlink" in err.value.details() and "vu01" in err.value.details()
    assert (target / "data").read_text() == "keep me"
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o755
    assert os.path.islink(rig.socket_root / "vu01")
    # nothing half-made: the first device's folder and files were not made either
    assert not (rig.socket_root / "vu00").exists()
    assert not (rig.devinfo / "dp").exists() or list((rig.devinfo / "dp").iterdir()) == []


def test_unknown_device_is_not_found(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, healthy, timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        rig.kubelet.stub(VU).Allocate(
            pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=["../etc"])])
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "../etc" in err.value.details()
    assert not (rig.root / "etc").exists()


def test_health_follows_probe_and_socket_root(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, healthy, timeout=5)
    before = rig.kubelet.updates(VU)
    rig.probe.ok = False
    rig.kubelet.wait_for(VU, unhealthy, timeout=5)
    assert rig.kubelet.updates(VU) > before
    assert rig.kubelet.free(VU) == []
    rig.probe.ok = True
    rig.kubelet.wait_for(VU, healthy, timeout=5)
    # socket root gone: unhealthy; back: healthy
    os.rename(rig.socket_root, rig.root / "moved")
    rig.kubelet.wait_for(VU, unhealthy, timeout=5)
    os.rename(rig.root / "moved", rig.socket_root)
    rig.kubelet.wait_for(VU, healthy, timeout=5)


def test_health_probe_that_raises_is_unhealthy(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, healthy, timeout=5)

    def boom() -> tuple[bool, str]:
        raise OSError("no route")

    vhostuser_source(rig).health_probe = boom
    rig.kubelet.wait_for(VU, unhealthy, timeout=5)
    assert "no route" in vhostuser_source(rig).last_health[1]


@pytest.mark.root
def test_kubelet_restart_reregisters_within_5s(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, healthy, timeout=5)
    rig.kubelet.allocate(VU, 1)
    t0 = time.monotonic()
    rig.kubelet.restart()
    t_vu = rig.kubelet.wait_registered(VU, after=t0, timeout=5)
    t_dp = rig.kubelet.wait_registered(DP, after=t0, timeout=5)
    assert max(t_vu, t_dp) - t0 < 5.0
    assert rig.manager.servers[VU].registrations == 2
    assert stat.S_IMODE(os.lstat(rig.dp_dir / "vhostplug.io_vhostuser.sock").st_mode) == 0o600
    devs = rig.kubelet.wait_for(VU, healthy, timeout=5)
    assert len(devs) == 4
    ids, _ = rig.kubelet.allocate(VU, 1)  # the new stub works; kubelet's checkpoint kept vu00 allocated
    assert ids == ["vu01"]


def test_dataplane_mounts_socket_root(rig: Rig) -> None:
    rig.kubelet.wait_for(DP, healthy, timeout=5)
    ids, resp = rig.kubelet.allocate(DP, 1)
    assert ids == ["dataplane0"]
    assert [(m.host_path, m.container_path, m.read_only) for m in resp.mounts] == [
        (str(rig.socket_root), str(rig.socket_root), False)
    ]
    assert resp.envs["VHOSTPLUG_SOCKET_ROOT"] == str(rig.socket_root)


@pytest.mark.root
def test_stop_removes_sockets_and_devinfo(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, healthy, timeout=5)
    rig.kubelet.allocate(VU, 2)
    dp_files = list((rig.devinfo / "dp").iterdir())
    assert len(dp_files) == 2
    rig.manager.stop()
    assert list((rig.devinfo / "dp").iterdir()) == []
    socks = [p.name for p in rig.dp_dir.iterdir() if p.name != "kubelet.sock"]
    assert socks == []
    # the device folders stay (a pod may still use its socket)
    assert (rig.socket_root / "vu00").is_dir()


def test_registers_when_kubelet_comes_up_later(short_dir: Path) -> None:
    from vhostplug.deviceplugin.config import load_config
    from vhostplug.deviceplugin.manager import DevicePluginManager
    from vhostplug.lab.kubelet import LabKubelet

    manager = DevicePluginManager(
        load_config({"vhostuser": {"count": 2}, "dataplane": {"enabled": False}}),
        socket_root=short_dir / "s",
        device_plugin_dir=short_dir / "dp",
        devinfo_dir=short_dir / "di",
    )
    kubelet = LabKubelet(short_dir / "dp")
    try:
        manager.start()  # no kubelet yet: serves, Register fails and is retried
        assert not manager.servers[VU].registered
        assert (short_dir / "dp" / "vhostplug.io_vhostuser.sock").exists()
        kubelet.start()
        kubelet.wait_registered(VU, timeout=5)
        assert [d.ID for d in kubelet.wait_for(VU, healthy, timeout=5)] == ["vu00", "vu01"]
    finally:
        manager.stop()
        kubelet.stop()
