"""The device plugin under hostile or careless callers, through real gRPC on its unix sockets: held-open streams,
huge and partly bad Allocate requests, and a node without kubelet (each reproduced against the plugin first)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.functional.deviceplugin.conftest import VU, Rig
from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from vhostplug.deviceplugin.config import load_config
from vhostplug.deviceplugin.manager import DevicePluginManager
from vhostplug.deviceplugin.server import MAX_STREAMS, REGISTER_BACKOFF
from vhostplug.lab.kubelet import LabKubelet


def _stub(rig: Rig, resource: str = VU) -> tuple[grpc.Channel, pb_grpc.DevicePluginStub]:
    sock = rig.dp_dir / rig.manager.servers[resource].socket_name
    channel = grpc.insecure_channel(f"unix:{sock}")
    return channel, pb_grpc.DevicePluginStub(channel)  # type: ignore[no-untyped-call]


def _allocate(*requests: list[str]) -> pb.AllocateRequest:
    return pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=ids) for ids in requests])


def _wait_attempts(manager: DevicePluginManager, n: int, timeout: float) -> None:
    """Until every resource's server has tried to Register ``n`` times."""
    deadline = time.monotonic() + timeout
    while (seen := [s.register_attempts for s in manager.servers.values()]) and min(seen) < n:
        assert time.monotonic() < deadline, f"Register attempts {seen}, waited for {n}"
        time.sleep(0.02)


@pytest.mark.root
def test_open_streams_do_not_starve_unary_calls(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, lambda devs: bool(devs), timeout=5)  # the kubelet's own stream is open
    channel, stub = _stub(rig)
    streams = [stub.ListAndWatch(pb.Empty()) for _ in range(8)]
    try:
        outcomes: list[str] = []
        for s in streams:
            try:
                first = next(s)
                outcomes.append("open" if len(first.devices) == 4 else "bad")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                assert "ListAndWatch streams" in (exc.details() or "")
                outcomes.append("refused")
        assert outcomes.count("open") == MAX_STREAMS - 1 and outcomes.count("refused") == 8 - (MAX_STREAMS - 1)
        # unary calls still answer, many at once
        for _ in range(3):
            opts = stub.GetDevicePluginOptions(pb.Empty(), timeout=5)
            assert opts.get_preferred_allocation_available
        resp = stub.Allocate(_allocate(["vu02"]), timeout=5)
        assert resp.container_responses[0].envs["VHOSTPLUG_DEVICES"] == "vu02"
        # and the kubelet's stream still gets changes
        rig.probe.ok = False
        rig.kubelet.wait_for(VU, lambda devs: all(d.health == "Unhealthy" for d in devs), timeout=5)
    finally:
        for s in streams:
            s.cancel()
        channel.close()
    # a closed stream frees its slot: a new one is served
    rig.probe.ok = True
    channel, stub = _stub(rig)
    try:
        deadline = time.monotonic() + 5
        while True:
            s = stub.ListAndWatch(pb.Empty())
            try:
                assert len(next(s).devices) == 4
                s.cancel()
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "stream slots were not freed"
                time.sleep(0.2)
    finally:
        channel.close()


def test_many_unknown_ids_are_not_found_with_a_bounded_message(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.kubelet.wait_for(VU, lambda devs: bool(devs), timeout=5)
    channel, stub = _stub(rig)
    ids = [f"nope{i:06d}" for i in range(100_000)]
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(grpc.RpcError) as err:
            stub.Allocate(_allocate(ids), timeout=30)
    finally:
        channel.close()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    details = err.value.details() or ""
    assert "nope000000" in details and "and 99995 more" in details and len(details) < 400, details[:500]
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)


def test_one_bad_container_request_changes_nothing(rig: Rig) -> None:
    rig.kubelet.wait_for(VU, lambda devs: bool(devs), timeout=5)
    used = rig.socket_root / "vu03"
    used.mkdir(parents=True)
    (used / "app.sock").write_text("a running pod's socket")
    channel, stub = _stub(rig)
    try:
        for requests in ((["vu03"], ["bogus"]), (["vu03"], ["vu03"]), (["vu03"], [])):
            with pytest.raises(grpc.RpcError) as err:
                stub.Allocate(_allocate(*requests), timeout=5)
            assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), requests
        with pytest.raises(grpc.RpcError) as err:
            stub.Allocate(pb.AllocateRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()
    assert (used / "app.sock").read_text() == "a running pod's socket"
    assert not list(rig.devinfo.glob("dp/*vu03*"))


@pytest.fixture
def lonely(short_dir: Path) -> Iterator[tuple[DevicePluginManager, Path]]:
    """A device plugin on a node whose kubelet is not running (yet)."""
    manager = DevicePluginManager(
        load_config({"healthSeconds": 1, "vhostuser": {"count": 2}}),
        socket_root=short_dir / "s",
        device_plugin_dir=short_dir / "dp",
        devinfo_dir=short_dir / "di",
        container_root=str(short_dir / "c"),
        watch_seconds=0.05,
    )
    try:
        yield manager, short_dir / "dp"
    finally:
        manager.stop()


def test_without_kubelet_registration_backs_off_and_says_it_once(
    lonely: tuple[DevicePluginManager, Path], caplog: pytest.LogCaptureFixture
) -> None:
    manager, dp_dir = lonely
    with caplog.at_level(logging.INFO, logger="vhostplug.deviceplugin"):
        started = time.monotonic()
        manager.start()
        _wait_attempts(manager, 3, timeout=20)
        # retried with a growing pause (1 + 2 s), not every 50 ms: the third attempt comes 3 s after the first
        assert time.monotonic() - started >= sum(REGISTER_BACKOFF[0] * 2**i for i in range(2))
        warnings = [r for r in caplog.records if "cannot register" in r.getMessage()]
        # one warning per resource (vhostuser, dataplane), not one per attempt
        assert len(warnings) == 2, [r.getMessage() for r in warnings]
        assert all("kubelet not running" in r.getMessage() and len(r.getMessage()) < 400 for r in warnings)
        kubelet = LabKubelet(dp_dir)
        started = time.monotonic()
        kubelet.start()
        try:
            # a new kubelet socket is tried at once, not after the pause
            for resource in manager.servers:
                kubelet.wait_registered(resource, timeout=5)
            assert time.monotonic() - started < 2
            deadline = time.monotonic() + 5  # kubelet records a Register before the plugin logs its answer
            while sum("registered with kubelet" in r.getMessage() for r in caplog.records) < 2:
                assert time.monotonic() < deadline, "registrations not logged"
                time.sleep(0.05)
        finally:
            kubelet.stop()


def test_kubelet_going_away_is_said_once_too(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.kubelet.wait_registered(VU, timeout=5)
    with caplog.at_level(logging.WARNING, logger="vhostplug.deviceplugin"):
        before = min(s.register_attempts for s in rig.manager.servers.values())
        rig.kubelet.stop()
        for entry in rig.dp_dir.iterdir():  # kubelet wipes the folder when it starts again; here it is just gone
            if entry.is_socket():
                entry.unlink()
        # the failed Register after serving again, and one retry that fails the same way
        _wait_attempts(rig.manager, before + 2, timeout=20)
    lines = [r.getMessage() for r in caplog.records if "cannot register" in r.getMessage()]
    assert len(lines) == len(rig.manager.servers), lines
