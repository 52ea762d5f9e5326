"""A real container runtime applies the CDI spec the agent wrote: rootful podman (Debian 12's 4.3) runs a container
from a busybox root folder with ``--device <the CDI device ID Prepare returned>``; inside, the claim's socket folder is
at the stable container path (a file the container writes there appears in the host folder) and the KEP-5304
metadata file is at its well-known path. Podman 4.3 reads CDI specs only from /etc/cdi and /var/run/cdi and knows CDI
up to 0.5.0: this agent writes 0.5.0 specs into /var/run/cdi, one file named by the claim's UID, removed by
Unprepare."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.dra.conftest import NODE, dra_config, wait_for_slices
from tests.functional.dra.test_prepare import _leftovers, _seed
from vhostplug.dra.config import DRIVER_NAME
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.drakubelet import DraKubelet
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.podinfo import devicemetadata
from vhostplug_testsupport import draobjects
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent

PODMAN = shutil.which("podman") or "/usr/bin/podman"
SYSTEM_CDI = Path("/var/run/cdi")


@pytest.fixture(scope="module")
def podman_agent(private_ovs: PrivateOvs, apiserver: ApiServer) -> Iterator[tuple[AgentProc, DraKubelet]]:
    root = Path(tempfile.mkdtemp(prefix="vhp-drapm-", dir="/tmp"))
    dra = dra_config(root, apiserver, cdiDir=str(SYSTEM_CDI), cdiVersion="0.5.0")
    agent = make_agent(private_ovs, bridges={"allowed": ["br-dra"]}, dra=dra)
    agent.dra_root = root  # type: ignore[attr-defined]
    kubelet = DraKubelet(root / "plugins_registry")
    try:
        wait_for_slices(apiserver)
        kubelet.register()
        yield agent, kubelet
    finally:
        kubelet.close()
        stop_agent(agent, bridges=("br-dra",))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def rootfs() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="vhp-rootfs-", dir="/tmp"))
    try:
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "var/run"):
            (root / d).mkdir(parents=True)
        shutil.copy2("/bin/busybox", root / "bin" / "busybox")
        for applet in ("sh", "cat", "echo", "ls", "test"):
            (root / "bin" / applet).symlink_to("busybox")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_podman_runs_a_container_with_our_cdi_device(
    podman_agent: tuple[AgentProc, DraKubelet], apiserver: ApiServer, rootfs: Path, unique: str
) -> None:
    agent, kubelet = podman_agent
    c = _seed(apiserver, draobjects.claim(f"pm-{unique}", NODE, [("vhost", "vhu-br-dra-13")], pod_claim_name="net1"))
    entry = kubelet.prepare([c]).claims[c.uid]
    assert entry.error == ""
    [cdi_id] = entry.devices[0].cdi_device_ids
    spec_file = SYSTEM_CDI / f"{DRIVER_NAME}_vhostuser_{c.uid}.json"
    try:
        assert spec_file.is_file()
        cfolder = "/var/run/vhostplug/dra/resourceclaimtemplates/net1/vhost"
        meta = f"{devicemetadata.CONTAINER_ROOT}/resourceclaimtemplates/net1/vhost/{DRIVER_NAME}-metadata.json"
        script = f"test -d {cfolder} && echo from-container > {cfolder}/probe && cat {meta}"
        # --device before --rootfs; lowered rlimits: rootful podman's defaults exceed what root may raise here
        argv = [
            PODMAN, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "--device", cdi_id, "--rootfs", str(rootfs), "/bin/sh", "-c", script,
        ]  # fmt: skip
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        seen = devicemetadata.decode(r.stdout)
        assert seen is not None
        assert devicemetadata.vhost_user(seen, "vhost", DRIVER_NAME).path == f"{cfolder}/vhu.sock"
        status = apiserver.get("resource.k8s.io/v1", "ResourceClaim", c.name, c.namespace)
        assert status is not None
        host_folder = Path(status["status"]["devices"][0]["data"]["hostFolder"])
        assert (host_folder / "probe").read_text() == "from-container\n"
    finally:
        assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert not spec_file.exists()
    assert _leftovers(agent, c) == []
