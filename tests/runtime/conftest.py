"""Fixtures of the containerd suite: one private containerd (CRI plugin, runc, our shim as `vhostplug` next to
Debian's CNI plugins) and one vhostplug agent on the session's private OVS-DPDK, shared by the tests of this folder.

Each test writes its own conflist (a network name of its own, so host-local keeps its leases apart) and must leave
nothing behind: no sandbox, shim, mount, host-local lease, OVS port or socket folder (checked after every test).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root
from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.containerd import Containerd
from vhostplug_testsupport.containerd_node import AgentNode, install_cni, vhostplug_conflist


@dataclass
class Runtime:
    ctrd: Containerd
    node: AgentNode
    network: str = ""
    needle: str = ""

    def use(self, conflist: dict[str, Any], needle: str | None = None) -> str:
        """Install ``conflist`` and wait until containerd has loaded it (its text shows ``needle``, by default the
        network name); returns the network name."""
        self.ctrd.write_conflist(conflist)
        self.ctrd.wait_cni_config(needle or str(conflist["name"]))
        self.network, self.needle = str(conflist["name"]), needle or ""
        return self.network

    def conflist(self, **kw: Any) -> dict[str, Any]:
        name = kw.pop("name", None) or f"vhp-{uuid.uuid4().hex[:8]}"
        return vhostplug_conflist(self.node, self.ctrd.ipam_dir, name, **kw)

    def leftovers(self) -> list[str]:
        return self.ctrd.leftovers() + self.node.leftovers()


@pytest.fixture(scope="session")
def runtime_session(private_ovs: PrivateOvs) -> Iterator[Runtime]:
    require_root()
    root = Path(tempfile.mkdtemp(prefix="vhp-ctrd-", dir="/tmp"))
    node = AgentNode(private_ovs, root / "node")
    node.dir.mkdir()
    ctrd = Containerd(root / "c")
    try:
        node.start()
        ctrd.prepare(install_cni)
        ctrd.start()
        ctrd.import_pause_image()
        yield Runtime(ctrd, node)
    finally:
        forced = ctrd.stop()
        node.close()
        shutil.rmtree(root, ignore_errors=True)
        assert not forced, f"containerd teardown had to force: {forced}"


@pytest.fixture
def runtime(runtime_session: Runtime) -> Iterator[Runtime]:
    rt = runtime_session
    if rt.ctrd.proc is None:
        rt.ctrd.start()
    assert rt.leftovers() == [], "an earlier test left these behind"
    yield rt
    left = rt.leftovers()
    if left:
        _recover(rt)
    assert left == [], f"left behind: {left}"


def _recover(rt: Runtime) -> None:
    """Leave the next test a clean runtime even when this one failed: a valid conflist under the same network name
    (so host-local finds its leases), then remove every sandbox and any port still there."""
    if rt.network and rt.needle:
        rt.ctrd.write_conflist(rt.conflist(name=rt.network))
        rt.ctrd.wait_cni_config(rt.needle, present=False)
    for sb in rt.ctrd.cri.list_sandboxes():
        try:
            rt.ctrd.cri.stop_sandbox(sb.id)
            rt.ctrd.cri.remove_sandbox(sb.id)
        except Exception:
            pass
    for port in rt.node.ports():
        rt.node.dataplane.detach(port.name)
    if rt.node.socket_root.exists():
        shutil.rmtree(rt.node.socket_root, ignore_errors=True)
