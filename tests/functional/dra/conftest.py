"""A real agent with the DRA kubelet plugin on, on the session's private OVS, reading claims from the stand-in
kube-apiserver over HTTPS (bearer token); a kubelet stand-in registered with it over the plugin watcher's gRPC."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.drakubelet import DraKubelet
from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent

NODE = "node-a"
BRIDGE = "br-dra"


@pytest.fixture(scope="module")
def apiserver() -> Iterator[ApiServer]:
    with tempfile.TemporaryDirectory(prefix="vhp-api-") as tls, ApiServer(tls_dir=Path(tls), token="dra-t0ken") as api:
        (Path(tls) / "token").write_text("dra-t0ken\n")
        yield api


def dra_config(root: Path, api: ApiServer, **more: object) -> dict[str, object]:
    assert api.cert is not None
    return {
        "enabled": True,
        "nodeName": NODE,
        "pluginsDir": str(root / "plugins"),
        "registryDir": str(root / "plugins_registry"),
        "cdiDir": str(root / "cdi"),
        "apiServer": {"url": api.url, "tokenFile": str(api.cert.parent / "token"), "caFile": str(api.cert)},
        **more,
    }


def wait_for_slices(api: ApiServer) -> None:
    """The agent publishes this node's slots (vhu-br-dra-0..15) before kubelet's claims can name them."""
    api.wait_for(lambda: [s for s in api.list("resource.k8s.io/v1", "ResourceSlice") if s["spec"]["nodeName"] == NODE])


@pytest.fixture(scope="module")
def dra_agent(private_ovs: PrivateOvs, apiserver: ApiServer) -> Iterator[AgentProc]:
    root = Path(tempfile.mkdtemp(prefix="vhp-dra-", dir="/tmp"))
    agent = make_agent(private_ovs, bridges={"allowed": [BRIDGE, "br-cni"]}, dra=dra_config(root, apiserver))
    agent.dra_root = root  # type: ignore[attr-defined]
    wait_for_slices(apiserver)
    try:
        yield agent
    finally:
        stop_agent(agent, bridges=(BRIDGE, "br-cni"))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def kubelet(dra_agent: AgentProc) -> Iterator[DraKubelet]:
    k = DraKubelet(dra_agent.dra_root / "plugins_registry")  # type: ignore[attr-defined]
    k.register()
    try:
        yield k
    finally:
        k.close()
