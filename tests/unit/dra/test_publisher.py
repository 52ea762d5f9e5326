"""The slice publisher through real HTTP to the stand-in kube-apiserver (the driver's own API client): a pool over
several slices written whole with one generation, shrunk and grown, nothing written when nothing changed, and
another node's or driver's slices never touched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from vhostplug.cni.policy import NodePolicy
from vhostplug.dra.config import ApiServerConfig
from vhostplug.dra.kubeapi import KubeApi
from vhostplug.dra.publisher import SlicePublisher
from vhostplug.dra.sliceapi import KubeSliceApi
from vhostplug.dra.sliceconfig import SlicesConfig
from vhostplug.dra.slices import node_devices
from vhostplug.lab.apiserver import ApiServer

DRIVER = "vhostuser.vhostplug.io"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def _mine(api: ApiServer, node: str = "n1") -> list[dict[str, Any]]:
    return [s for s in api.list("resource.k8s.io/v1", "ResourceSlice") if s["spec"]["nodeName"] == node]


def test_a_pool_over_several_slices(api: ApiServer) -> None:
    slots = {"n": 100}
    policy = NodePolicy(bridges=("br-a", "br-b"))

    def devices() -> list[dict[str, Any]]:
        return node_devices(policy, SlicesConfig.model_validate({"slotsPerBridge": slots["n"]}))

    other = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": "gpu"},
             "spec": {"driver": "gpu.example.com", "nodeName": "n1", "pool": {"name": "n1", "generation": 9, "resourceSliceCount": 1}, "devices": []}}  # fmt: skip
    api.put(other)
    publisher = SlicePublisher(KubeSliceApi(KubeApi(ApiServerConfig(url=api.url))), "n1", DRIVER, devices)
    assert publisher.sync() is True
    slices = [s for s in _mine(api) if s["spec"]["driver"] == DRIVER]
    assert sorted(len(s["spec"]["devices"]) for s in slices) == [72, 128]
    assert all(s["spec"]["pool"] == {"name": "n1", "generation": 1, "resourceSliceCount": 2} for s in slices)
    assert publisher.sync() is False  # nothing changed: nothing written
    slots["n"] = 10  # shrinks to one slice: one updated, the other deleted, generation 2
    assert publisher.sync() is True
    (one,) = [s for s in _mine(api) if s["spec"]["driver"] == DRIVER]
    assert len(one["spec"]["devices"]) == 20 and one["spec"]["pool"]["generation"] == 2
    assert one["spec"]["pool"]["resourceSliceCount"] == 1
    slots["n"] = 0  # no devices: no slices
    assert publisher.sync() is True
    assert [s["metadata"]["name"] for s in _mine(api)] == ["gpu"]  # another driver's slice is untouched
    assert publisher.sync() is False
    slots["n"] = 1  # back: the generation keeps rising (a scheduler never sees an old number again)
    assert publisher.sync() is True
    (back,) = [s for s in _mine(api) if s["spec"]["driver"] == DRIVER]
    assert back["spec"]["pool"]["generation"] == 4
    assert api.get("resource.k8s.io/v1", "ResourceSlice", "gpu") == api.get(
        "resource.k8s.io/v1", "ResourceSlice", "gpu"
    )
    gpu = api.get("resource.k8s.io/v1", "ResourceSlice", "gpu")
    assert gpu is not None and gpu["spec"]["pool"]["generation"] == 9
