"""Fuzzing the device plugin: generated Allocate, GetPreferredAllocation and other calls on every kind of resource.

Most cases call the gRPC servicer in-process (the object grpc hands requests to, with a context whose ``abort`` raises
like grpc's); a few hundred go through real gRPC on the unix sockets of a started plugin registered at the lab
kubelet. Every answer must be the method's response or a gRPC status with a code from the documented set and a short
message; a refused Allocate must leave every device folder as it was (a marker file in each survives); nothing else
may be raised; nothing may hang.

Seed and size come from ``vhostplug_testsupport.fuzz`` (``VHOSTPLUG_FUZZ_SEED``, printed in the header and with a
failure; ``VHOSTPLUG_FUZZ_SCALE``, 1 = the CI size).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from vhostplug.deviceplugin.api import deviceplugin_pb2 as pb
from vhostplug.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from vhostplug.deviceplugin.config import load_config
from vhostplug.deviceplugin.manager import DevicePluginManager
from vhostplug.deviceplugin.server import _Servicer
from vhostplug.lab.kubelet import LabKubelet
from vhostplug_testsupport import fuzz
from vhostplug_testsupport.fakesys import standard

IN_PROCESS = fuzz.cases(2400)
OVER_GRPC = fuzz.cases(300)
SEED = fuzz.SEED
HINT = f"reproduce with {fuzz.reproduce_hint()}"

VU, DP, MLX, VIRTIO = "vhostplug.io/vhostuser", "vhostplug.io/dataplane", "vhostplug.io/vdpa_mlx", "vhostplug.io/vdpa_v"
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
}
MARKER = "marker"


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code, self.details = code, details


class Context:
    """What the servicer uses of a grpc.ServicerContext; ``abort`` raises as grpc's does."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def is_active(self) -> bool:
        return True


@dataclass
class Plugin:
    root: Path
    manager: DevicePluginManager
    ids: dict[str, list[str]]


def make_manager(root: Path) -> DevicePluginManager:
    fs = standard(root / "f")
    config = {
        "healthSeconds": 600,
        "vhostuser": {"count": 8},
        "vdpa": {
            "sysfsRoot": str(fs.sys),
            "devRoot": str(fs.dev),
            "rescanSeconds": 600,
            "pools": [
                {"resourceName": MLX, "selectors": {"vendors": ["15b3"], "vdpaType": "vhost"}},
                {"resourceName": VIRTIO, "selectors": {"vdpaType": "virtio"}},
            ],
        },
    }
    return DevicePluginManager(
        load_config(config),
        socket_root=root / "s",
        device_plugin_dir=root / "dp",
        devinfo_dir=root / "di",
        container_root=str(root / "c"),
        watch_seconds=0.2,
    )


def known_ids(manager: DevicePluginManager) -> dict[str, list[str]]:
    return {name: [d.id for d in server.devices()] for name, server in manager.servers.items()}


def rand_id(r: random.Random, known: list[str], everything: list[str]) -> str:
    roll = r.random()
    if roll < 0.55 and known:
        return r.choice(known)
    if roll < 0.7:
        return r.choice(everything)
    return r.choice(
        [
            "",
            "bogus",
            "vu99",
            "../vu00",
            "vu00/../..",
            "\x00",
            "é",
            "x" * r.choice([64, 4096, 70_000]),
            "".join(chr(r.randint(1, 0x2FFF)) for _ in range(r.randint(1, 10))),
        ]
    )


def rand_requests(r: random.Random, known: list[str], everything: list[str]) -> list[list[str]]:
    if r.random() < 0.02:
        return [[f"nope{i}" for i in range(r.choice([1000, 20_000]))]]
    return [
        [rand_id(r, known, everything) for _ in range(r.choice([0, 1, 1, 1, 2, 3]))]
        for _ in range(r.choice([0, 1, 1, 1, 2, 3]))
    ]


def put_markers(plugin: Plugin) -> None:
    for i in plugin.ids[VU]:
        folder = plugin.root / "s" / i
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text(i)


def markers(plugin: Plugin) -> set[str]:
    return {i for i in plugin.ids[VU] if (plugin.root / "s" / i / MARKER).exists()}


def check_status(code: grpc.StatusCode | None, details: str, what: str) -> None:
    assert code in ALLOWED, f"{what}: status {code} {details[:300]!r}; {HINT}"
    assert 0 < len(details) <= 1200, f"{what}: message of {len(details)} characters; {HINT}"


@pytest.fixture
def plugin(short_dir: Path) -> Iterator[Plugin]:
    manager = make_manager(short_dir)
    manager.rescan()  # devices known, nothing served: the servicer is called directly
    p = Plugin(short_dir, manager, known_ids(manager))
    try:
        yield p
    finally:
        manager.stop()


@pytest.mark.root
def test_servicer_in_process(plugin: Plugin, caplog: pytest.LogCaptureFixture) -> None:
    r = fuzz.rng_for("deviceplugin-in-process")
    print(f"device plugin fuzz in-process: {IN_PROCESS} cases, seed {SEED}")
    everything = [i for ids in plugin.ids.values() for i in ids]
    servicers = {name: _Servicer(server) for name, server in plugin.manager.servers.items()}
    put_markers(plugin)
    outcomes: dict[str, int] = {}
    for n in range(IN_PROCESS):
        resource = r.choice(sorted(servicers))
        servicer, known = servicers[resource], plugin.ids[resource]
        method = r.choices(["Allocate", "GetPreferredAllocation", "GetDevicePluginOptions", "PreStartContainer"],
                           weights=[70, 20, 5, 5])[0]  # fmt: skip
        what = f"case {n}: {method} on {resource}"
        try:
            if method == "Allocate":
                requests = rand_requests(r, known, everything)
                before = markers(plugin)
                req = pb.AllocateRequest(
                    container_requests=[pb.ContainerAllocateRequest(devices_ids=ids) for ids in requests]
                )
                try:
                    resp = servicer.Allocate(req, Context())  # type: ignore[arg-type]
                except Aborted:
                    assert markers(plugin) == before, f"{what}: a refused Allocate changed folders; {HINT}"
                    raise
                assert len(resp.container_responses) == len(requests), what
                asked = {i for ids in requests for i in ids}
                assert asked <= set(known), f"{what}: allocated unknown IDs {sorted(asked - set(known))[:3]}; {HINT}"
                if resource == VU:
                    assert markers(plugin) == before - asked, f"{what}: folders not emptied as asked; {HINT}"
                    put_markers(plugin)
            elif method == "GetPreferredAllocation":
                creqs = []
                for _ in range(r.choice([0, 1, 2])):
                    available = r.sample(everything, r.randint(0, len(everything)))
                    must = [rand_id(r, available, everything) for _ in range(r.choice([0, 0, 1, 2]))]
                    size = r.choice([0, 1, 2, 3, 100, -1, 2**31 - 1])
                    creqs.append((available, must, size))
                preq = pb.PreferredAllocationRequest(
                    container_requests=[
                        pb.ContainerPreferredAllocationRequest(
                            available_deviceIDs=a, must_include_deviceIDs=m, allocation_size=s
                        )
                        for a, m, s in creqs
                    ]
                )
                presp = servicer.GetPreferredAllocation(preq, Context())  # type: ignore[arg-type]
                assert len(presp.container_responses) == len(creqs), what
                for (available, must, size), got in zip(creqs, presp.container_responses, strict=True):
                    ids = list(got.deviceIDs)
                    assert len(ids) <= max(0, size), f"{what}: {len(ids)} IDs for size {size}; {HINT}"
                    assert len(set(ids)) == len(ids), f"{what}: repeated IDs {ids}; {HINT}"
                    assert set(ids) <= set(available) | set(must), f"{what}: IDs from nowhere; {HINT}"
            elif method == "GetDevicePluginOptions":
                opts = servicer.GetDevicePluginOptions(pb.Empty(), Context())  # type: ignore[arg-type]
                assert opts.get_preferred_allocation_available
            else:
                pre = pb.PreStartContainerRequest(devices_ids=[rand_id(r, known, everything)])
                assert servicer.PreStartContainer(pre, Context()) == pb.PreStartContainerResponse()  # type: ignore[arg-type]
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except Aborted as exc:
            check_status(exc.code, exc.details, what)
            outcomes[exc.code.name] = outcomes.get(exc.code.name, 0) + 1
    assert outcomes.get("ok", 0) > IN_PROCESS // 10 and outcomes.get("NOT_FOUND", 0) > 0, outcomes
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not tracebacks, f"tracebacks logged: {tracebacks[:3]}; {HINT}"


@pytest.fixture
def served(short_dir: Path) -> Iterator[tuple[Plugin, LabKubelet]]:
    kubelet = LabKubelet(short_dir / "dp")
    kubelet.start()
    manager = make_manager(short_dir)
    manager.start()
    try:
        for resource in (VU, DP, MLX, VIRTIO):
            kubelet.wait_registered(resource, timeout=10)
        yield Plugin(short_dir, manager, known_ids(manager)), kubelet
    finally:
        manager.stop()
        kubelet.stop()


@pytest.mark.root
def test_over_grpc(served: tuple[Plugin, LabKubelet], caplog: pytest.LogCaptureFixture) -> None:
    plugin, kubelet = served
    r = fuzz.rng_for("deviceplugin-grpc")
    print(f"device plugin fuzz over gRPC: {OVER_GRPC} cases, seed {SEED}")
    everything = [i for ids in plugin.ids.values() for i in ids]
    channels: dict[str, Any] = {}
    stubs: dict[str, pb_grpc.DevicePluginStub] = {}
    for name, server in plugin.manager.servers.items():
        channels[name] = grpc.insecure_channel(f"unix:{plugin.root / 'dp' / server.socket_name}")
        stubs[name] = pb_grpc.DevicePluginStub(channels[name])  # type: ignore[no-untyped-call]
    put_markers(plugin)
    streams = []
    try:
        for n in range(OVER_GRPC):
            resource = r.choice(sorted(stubs))
            stub, known = stubs[resource], plugin.ids[resource]
            what = f"case {n} on {resource}"
            roll = r.random()
            try:
                if roll < 0.03:
                    streams.append(stub.ListAndWatch(pb.Empty()))
                    if len(streams) > 6:
                        streams.pop(0).cancel()
                    continue
                requests = rand_requests(r, known, everything)
                before = markers(plugin)
                req = pb.AllocateRequest(
                    container_requests=[pb.ContainerAllocateRequest(devices_ids=ids) for ids in requests]
                )
                try:
                    resp = stub.Allocate(req, timeout=30)
                except grpc.RpcError:
                    assert markers(plugin) == before, f"{what}: a refused Allocate changed folders; {HINT}"
                    raise
                assert len(resp.container_responses) == len(requests), what
                if resource == VU:
                    put_markers(plugin)
            except grpc.RpcError as exc:
                check_status(exc.code(), exc.details() or "", what)
        for name, stub in stubs.items():
            assert stub.GetDevicePluginOptions(pb.Empty(), timeout=5).get_preferred_allocation_available, name
        assert kubelet.devices(VU), "the kubelet's stream lost its device list"
        tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
        assert not tracebacks, f"tracebacks logged: {tracebacks[:3]}; {HINT}"
    finally:
        for s in streams:
            s.cancel()
        for ch in channels.values():
            ch.close()
