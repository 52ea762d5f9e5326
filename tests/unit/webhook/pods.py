"""Pods, NADs and JSONPatch application for the webhook tests."""

from __future__ import annotations

import base64
import copy
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vhostplug_testsupport.webhook import ApiServer, put_nad

NADS: dict[tuple[str, str], dict[str, str] | int] = {
    ("default", "vhu-net"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"},
    ("infra", "vhu-fast"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser-numa0"},
    ("default", "sriov"): {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"},
    ("default", "plain"): {},
    ("default", "broken"): 500,
    ("default", "vh"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"},
}
#: seconds the package's impatient webhook gives a client for its handshake, head and body (the tests of the cut-off
#: itself; the package's other webhook keeps the default 10 s, so that 400 handshakes at once on a busy machine are
#: not cut off)
CUT_OFF = 1.5


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Just enough RFC 6902 (``add``) to check what the API server would make of our answer."""
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node: Any = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        last = parts[-1]
        if isinstance(node, list):
            node.append(op["value"]) if last == "-" else node.insert(int(last), op["value"])
        else:
            node[last] = op["value"]
    return doc


def patched(resp: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    assert resp["allowed"] is True
    assert resp["patchType"] == "JSONPatch"
    return apply_patch(pod, json.loads(base64.b64decode(resp["patch"])))


def launcher_pod(networks: str) -> dict[str, Any]:
    return {
        "metadata": {
            "generateName": "virt-launcher-vm1-",
            "labels": {"kubevirt.io": "virt-launcher"},
            "annotations": {"k8s.v1.cni.cncf.io/networks": networks, "kubevirt.io/domain": "vm1"},
        },
        "spec": {
            "containers": [
                {"name": "compute", "image": "virt-launcher", "resources": {"requests": {"memory": "1Gi"}}},
                {"name": "hook-sidecar-0", "image": "vhostplug-sidecar"},
                {"name": "guest-console-log", "image": "virt-launcher"},
            ]
        },
    }


def net_pod(networks: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": networks}},
        "spec": {"containers": [{"name": "a"}]},
    }


def ours(api: ApiServer, *names: str) -> None:
    """Make ``names`` (namespace ``default``) vhostplug networks at the stand-in API."""
    for name in names:
        put_nad(api, "default", name, {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"})


def wait_for(what: Callable[[], bool], timeout: float = 20.0, message: str = "") -> None:
    """Poll ``what`` (a question to the real process) until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, message or "condition not reached"
        time.sleep(0.05)


def rss_mb(pid: int) -> float:
    """``VmRSS`` of ``pid`` in MB (10^6 bytes), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise AssertionError(f"no VmRSS for {pid}")


def tls_client(version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    """A client context for exactly ``version`` (and ``ciphers``) that trusts any certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers is not None or version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    return ctx
