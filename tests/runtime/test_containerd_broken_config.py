"""containerd 1.6 and a network config that does not validate for vhostplug: RunPodSandbox fails with our message
and nothing is left; a conflist edited under a live pod does not strand it (DEL finds what ADD stored)."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from tests.runtime.conftest import Runtime
from tests.runtime.test_containerd_cni import check_attached, check_detached, remove


def _name() -> str:
    return f"pod-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("extra", "needle", "message"),
    [({"mode": "sideways"}, "sideways", "mode: "), ({"promiscMode": True}, "promiscMode", "promiscMode: unknown key")],
    ids=["bad-value", "unknown-key"],
)
def test_broken_conflist_fails_and_leaves_nothing(
    runtime: Runtime, extra: dict[str, Any], needle: str, message: str
) -> None:
    runtime.use(runtime.conflist(**extra), needle=needle)
    with pytest.raises(grpc.RpcError) as err:
        runtime.ctrd.cri.run_sandbox(_name())
    text = err.value.details() or ""
    assert "invalid vhostplug network configuration" in text and message in text, text
    assert runtime.node.ports() == []
    # whatever containerd kept of the failed sandbox can be removed
    for sb in runtime.ctrd.cri.list_sandboxes():
        remove(runtime, sb.id)
    assert runtime.ctrd.cri.list_sandboxes() == []


def test_conflist_edited_under_live_pod(runtime: Runtime) -> None:
    conflist = runtime.conflist()
    network = runtime.use(conflist)
    sid = runtime.ctrd.cri.run_sandbox(_name())
    seen = check_attached(runtime, sid, network, "server")

    # an admin adds a key another plugin uses: the config no longer validates for vhostplug
    conflist["plugins"][0]["promiscMode"] = True
    runtime.use(conflist, needle="promiscMode")

    remove(runtime, sid)
    check_detached(runtime, sid, seen)
