"""Fuzzing the webhook: generated AdmissionReviews, pods and network annotations, and raw bodies.

Most cases go in-process through the real aiohttp application (the handler that decodes, checks and answers; no
TLS) with an in-memory NAD resolver that fails the test when asked about a name that is not a Kubernetes name; a few
hundred go over real HTTPS to a `vhostplug webhook` process reading NADs from a stand-in kube-apiserver. Every answer
must be a well-formed protocol answer: HTTP 200 with an AdmissionReview for the request's uid (allowed, or denied with
a code and a message; a patch that decodes to JSONPatch), or 400/413 with a JSON ``error`` when the body cannot be a
review. Never a 500, never a traceback, never a hang.

Seed and size come from ``vhostplug_testsupport.fuzz`` (``VHOSTPLUG_FUZZ_SEED``, printed in the header and with a
failure; ``VHOSTPLUG_FUZZ_SCALE``, 1 = the CI size).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vhostplug.webhook.config import WebhookConfig
from vhostplug.webhook.resolver import ResolveError
from vhostplug.webhook.review import answer
from vhostplug.webhook.server import make_app
from vhostplug_testsupport import fuzz
from vhostplug_testsupport.webhook import paths, review_body, running_api, start_webhook

IN_PROCESS = fuzz.cases(2600)
OVER_HTTPS = fuzz.cases(200)
SEED = fuzz.SEED
HINT = f"reproduce with {fuzz.reproduce_hint()}"

_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NS = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
NET_KEY = "k8s.v1.cni.cncf.io/networks"
KNOWN = {"vhu-net": "vhostplug.io/vhostuser", "fast": "vhostplug.io/fast", "sriov": "intel.com/sriov"}


class Resolver:
    """In-memory NADs; fails the run when asked about something that is not a valid namespace/name."""

    def __init__(self) -> None:
        self.bad: list[tuple[str, str]] = []
        self.calls = 0

    async def resource_of(self, namespace: str, name: str) -> str | None:
        self.calls += 1
        if not _NS.fullmatch(namespace) or not _NAME.fullmatch(name):
            self.bad.append((namespace, name))
        if name == "broken":
            raise ResolveError(f"reading NetworkAttachmentDefinition {namespace}/{name}: 500")
        return KNOWN.get(name)


# ---- generators ------------------------------------------------------------------------------------------------------
ATTACKS = [
    "x/../../../../../../../api/v1/namespaces/kube-system/secrets/admin-token",
    "vh#frag",
    "vh?x=1",
    "../vhu-net",
    "%2e%2e/vhu-net",
    "vhu-net/../x",
    "\ud800",
    "\x00",
    "a" * 300,
    "VHU-NET",
    " ",
    "default/",
    "/vhu-net",
    "default//vhu-net",
    "vhu-net@",
    "@eth0",
]
NAMES = ["vhu-net", "fast", "sriov", "plain", "missing", "broken", "default/vhu-net", "infra/fast", "a.b-c"]


def rand_scalar(r: random.Random) -> Any:
    return r.choice(
        [
            None,
            True,
            0,
            -1,
            2**70,
            1.5,
            "",
            "x",
            "\ud800",
            "é" * r.randint(1, 20),
            r.choice(ATTACKS),
            "".join(chr(r.randint(0, 0x2FFF)) for _ in range(r.randint(0, 12))),
        ]
    )


def rand_json(r: random.Random, depth: int = 0) -> Any:
    kind = r.random()
    if depth > 4 or kind < 0.5:
        return rand_scalar(r)
    if kind < 0.75:
        return [rand_json(r, depth + 1) for _ in range(r.randint(0, 4))]
    return {str(rand_scalar(r)): rand_json(r, depth + 1) for _ in range(r.randint(0, 4))}


def deep(r: random.Random) -> Any:
    value: Any = "leaf"
    for _ in range(r.choice([30, 63, 64, 65, 100, 500])):
        value = {"k": value} if r.random() < 0.5 else [value]
    return value


def networks_text(r: random.Random) -> str:
    parts = []
    clean = r.random() < 0.6  # only valid names: the case reaches the lookups and the patch
    for _ in range(r.choice([0, 1, 2, 3, 5, 64, 65, 200])):
        name = r.choice(NAMES) if clean else r.choice(NAMES + ATTACKS) if r.random() < 0.8 else rand_scalar(r)
        part = str(name)
        if r.random() < 0.2:
            part += "@" + r.choice(["net1", "", "x@y", "\ud800"])
        parts.append(part)
    return r.choice([",", ", ", " , ", ",,"]).join(parts)


def networks_json(r: random.Random) -> str:
    items: list[Any] = []
    clean = r.random() < 0.6
    for _ in range(r.choice([0, 1, 2, 4, 65])):
        if clean:
            items.append({"name": r.choice(NAMES[:6])})
            continue
        item: Any = {"name": r.choice(NAMES + ATTACKS)} if r.random() < 0.8 else rand_json(r)
        if isinstance(item, dict) and r.random() < 0.3:
            item["namespace"] = r.choice(["default", "infra", "", None, "Kube", "a/b", 7, "\ud800"])
        items.append(item)
    text = json.dumps(items)
    return text if r.random() < 0.9 else text[: r.randint(0, len(text))]


def pod(r: random.Random) -> dict[str, Any]:
    containers: list[Any] = [{"name": "app", "image": "dpdk"}, {"name": "hook-sidecar-0"}, {"name": "compute"}]
    p: dict[str, Any] = {
        "metadata": {
            "name": "p",
            "labels": {"kubevirt.io": "virt-launcher"} if r.random() < 0.3 else {"app": "x"},
            "annotations": {NET_KEY: networks_json(r) if r.random() < 0.4 else networks_text(r)},
        },
        "spec": {"containers": containers[: r.randint(1, 3)]},
    }
    if r.random() < 0.3:
        p["metadata"]["annotations"]["vhostplug.io/container"] = r.choice(["app", "compute", "nope", 3])
    if r.random() < 0.3:
        p["spec"]["containers"][0]["resources"] = {"requests": {"vhostplug.io/vhostuser": r.choice(["1", "x", 2])}}
    if r.random() < 0.2:
        p["spec"]["volumes"] = [{"name": "vhostplug-podnetinfo"}]
    # break one thing, sometimes
    for _ in range(r.choice([0, 0, 1, 2])):
        where = r.choice(
            [
                ("metadata",),
                ("spec",),
                ("metadata", "labels"),
                ("metadata", "annotations"),
                ("metadata", "annotations", NET_KEY),
                ("spec", "containers"),
                ("spec", "volumes"),
                ("spec", "containers", 0),
                ("spec", "containers", 0, "resources"),
                ("spec", "containers", 0, "name"),
                ("spec", "containers", 0, "volumeMounts"),
            ]
        )
        node: Any = p
        for key in where[:-1]:
            node = (
                node[key]
                if isinstance(node, dict) and key in node
                else (node[key] if isinstance(node, list) and isinstance(key, int) and key < len(node) else None)
            )
            if node is None:
                break
        if isinstance(node, dict) or (isinstance(node, list) and isinstance(where[-1], int) and where[-1] < len(node)):
            node[where[-1]] = deep(r) if r.random() < 0.1 else rand_json(r)
    return p


def body(r: random.Random, i: int) -> tuple[bytes, str | None]:
    """A request body and the uid an AdmissionReview answer must carry (None: no review answer is due)."""
    roll = r.random()
    uid = f"fz-{i}"
    if roll < 0.06:
        return bytes(r.randrange(256) for _ in range(r.randint(0, 200))), None
    if roll < 0.10:
        n = r.choice([10, 900, 5000, 100_000])
        return (b"[" * n + b"]" * n) if r.random() < 0.5 else b'{"a":' * n + b"1" + b"}" * n, None
    if roll < 0.14:
        text = json.dumps(review_body(pod(r), uid))
        return text[: r.randint(0, len(text))].encode(), None
    if roll < 0.20:
        return json.dumps(rand_json(r)).encode(), None
    review = review_body(pod(r), uid, namespace=r.choice(["default", "default", "infra", "", "Bad", 5, None]))
    if roll < 0.28:
        review["request"]["kind"] = r.choice([{"kind": "Service"}, "Pod", None, {"kind": 3}])
    if roll < 0.30:
        review["request"]["object"] = rand_json(r)
    if roll < 0.32:
        review["request"]["object"] = {"metadata": {"annotations": {"deep": deep(r)}}, "spec": {"containers": []}}
    return json.dumps(review).encode(), uid


# ---- checks ----------------------------------------------------------------------------------------------------------
def check_answer(status: int, out: Any, uid: str | None, sent: bytes) -> None:
    where = f"{HINT}; body {sent[:300]!r}"
    assert status in (200, 400, 413), f"HTTP {status} {out!r}; {where}"
    assert isinstance(out, dict), where
    if status != 200:
        assert isinstance(out.get("error"), str) and out["error"], where
        assert "internal error" not in out["error"], f"{out}; {where}"
        return
    assert out.get("kind") == "AdmissionReview" and out.get("apiVersion") == "admission.k8s.io/v1", where
    resp = out["response"]
    if uid is not None:
        assert resp["uid"] == uid, where
    assert isinstance(resp["allowed"], bool), where
    if resp["allowed"]:
        if "patch" in resp:
            assert resp["patchType"] == "JSONPatch"
            ops = json.loads(base64.b64decode(resp["patch"]))
            assert isinstance(ops, list) and all(op["op"] == "add" and op["path"].startswith("/") for op in ops)
    else:
        assert resp["status"]["code"] in (400, 403, 503), f"{resp}; {where}"
        message = resp["status"]["message"]
        assert isinstance(message, str) and message and "internal error" not in message, f"{resp}; {where}"
        assert len(message) < 2000, where


def test_webhook_handler_in_process() -> None:
    """The handler's whole path from body bytes to answer (decode, checks, review, patch), without HTTP."""
    r = fuzz.rng_for("webhook-in-process")
    resolver = Resolver()
    config = WebhookConfig()
    print(f"webhook fuzz in-process: {IN_PROCESS} cases, seed {SEED}")

    async def run() -> None:
        for i in range(IN_PROCESS):
            sent, uid = body(r, i)
            async with asyncio.timeout(10):
                status, out = await answer(sent, resolver, config)
            check_answer(status, json.loads(json.dumps(out)), uid, sent)

    asyncio.run(run())
    assert not resolver.bad, f"the resolver was asked about invalid names {resolver.bad[:5]}; {HINT}"
    assert resolver.calls > IN_PROCESS // 20, "too few cases reached a NAD lookup to mean anything"


def test_webhook_app_in_process() -> None:
    """A few hundred through the aiohttp application (HTTP framing, size limit), no TLS."""
    r = fuzz.rng_for("webhook-app")
    resolver = Resolver()
    n = max(1, OVER_HTTPS)

    async def run() -> None:
        async with TestClient(TestServer(make_app(resolver, WebhookConfig()))) as client:
            for i in range(n):
                sent, uid = body(r, i)
                async with asyncio.timeout(10):
                    resp = await client.post("/mutate", data=sent, headers={"Content-Type": "application/json"})
                    out = await resp.json(content_type=None)
                check_answer(resp.status, out, uid, sent)

    asyncio.run(run())
    assert not resolver.bad, f"the resolver was asked about invalid names {resolver.bad[:5]}; {HINT}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Path]]:
    tls_dir = tmp_path_factory.mktemp("fuzz-tls")
    nads: dict[tuple[str, str], dict[str, str] | int] = {
        ("default", name): {"k8s.v1.cni.cncf.io/resourceName": res} for name, res in KNOWN.items()
    }
    nads[("default", "broken")] = 500
    log = tls_dir / "webhook.log"
    with running_api(tls_dir, nads) as api, open(log, "wb") as err:
        hook = start_webhook(api, tls_dir, stdout=err, stderr=subprocess.STDOUT)
        try:
            yield hook, api, log
        finally:
            hook.stop()


def test_webhook_over_https(live: tuple[Any, Any, Path]) -> None:
    hook, api, log = live
    r = fuzz.rng_for("webhook-https")
    print(f"webhook fuzz over HTTPS: {OVER_HTTPS} cases, seed {SEED}")
    started = time.monotonic()
    for i in range(OVER_HTTPS):
        sent, uid = body(r, i)
        status, out = hook.post(sent, timeout=20)
        check_answer(status, out, uid, sent)
    assert hook.proc.poll() is None, f"the webhook exited; {HINT}"
    bad = [p for p in paths(api) if "/network-attachment-definitions/" not in p or "/secrets" in p]
    assert not bad, f"the webhook asked the API for {bad[:3]}; {HINT}"
    fuzz.assert_no_traceback(log.read_text(errors="replace"), f"the webhook's log; {HINT}")
    assert time.monotonic() - started < 120
