"""An allocation applied inside a lab pod's own mount namespace: the device folder shows there, not outside."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.conftest import require_root
from tests.functional.deviceplugin.conftest import VU, Rig
from vhostplug.lab.kubelet import apply_to_pod


def _in_ns(pid: int, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"--mount=/proc/{pid}/ns/mnt", "--", *cmd], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.root
def test_apply_mount_inside_pod_namespace_only(rig: Rig) -> None:
    require_root()
    rig.kubelet.wait_for(VU, lambda d: len(d) == 4, timeout=5)
    ids, resp = rig.kubelet.allocate(VU, 1)
    host_dir = rig.socket_root / ids[0]
    (host_dir / "marker").write_text("from the host")
    pod = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    try:
        own_ns = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{pod.pid}/ns/mnt") == own_ns:
            assert time.monotonic() < deadline, "unshare did not enter a new mount namespace"
            time.sleep(0.02)
        apply_to_pod(resp, pod.pid)
        cpath = resp.mounts[0].container_path
        assert cpath == f"{rig.container_root}/{ids[0]}"
        assert _in_ns(pod.pid, "ls", cpath).split() == ["marker"]
        assert _in_ns(pod.pid, "cat", f"{cpath}/marker") == "from the host"
        inode_inside = _in_ns(pod.pid, "stat", "-c", "%i", cpath).strip()
        assert inode_inside == str(os.stat(host_dir).st_ino)
        # outside the pod the container path is only the (empty) mount point
        assert os.listdir(cpath) == []
        assert os.stat(cpath).st_ino != os.stat(host_dir).st_ino
    finally:
        pod.kill()
        pod.wait()
