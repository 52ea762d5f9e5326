"""The webhook as a cluster runs it: `vhostplug webhook` over TLS, NADs read through lightkube from a local HTTPS
stand-in for kube-apiserver, JSONPatch answers applied back onto the pod, cert rotation picked up without restart."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import REPO

VHOSTPLUG = REPO / ".venv" / "bin" / "vhostplug"
NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}"


def make_cert(folder: Path, stem: str) -> tuple[Path, Path]:
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakeApi:
    """Answers NAD GETs like kube-apiserver; counts hits per NAD."""

    nads: dict[tuple[str, str], dict[str, str] | int] = field(default_factory=dict)
    hits: dict[tuple[str, str], int] = field(default_factory=dict)
    port: int = 0

    async def handler(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        self.hits[key] = self.hits.get(key, 0) + 1
        nad = self.nads.get(key)
        if isinstance(nad, int):
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": nad,
                    "reason": "InternalError",
                    "message": "etcd is sad",
                },
                status=nad,
            )
        if nad is None:
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 404,
                    "reason": "NotFound",
                    "message": "not found",
                },
                status=404,
            )
        return web.json_response(
            {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": key[1], "namespace": key[0], "annotations": nad},
                "spec": {"config": "{}"},
            }
        )


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def api(tls_dir: Path) -> Iterator[FakeApi]:
    cert, key = make_cert(tls_dir, "api")
    fake = FakeApi(
        nads={
            ("default", "vhu-net"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"},
            ("infra", "vhu-fast"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser-numa0"},
            ("default", "sriov"): {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"},
            ("default", "plain"): {},
            ("default", "broken"): 500,
        }
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner_box: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_get(NAD_PATH, fake.handler)
        runner = web.AppRunner(app)
        await runner.setup()
        fake.port = free_port()
        await web.TCPSite(runner, "127.0.0.1", fake.port, ssl_context=ctx).start()
        runner_box.append(runner)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@dataclass
class Webhook:
    proc: subprocess.Popen[bytes]
    port: int
    cert: Path
    key: Path

    def post(self, body: bytes) -> tuple[int, Any]:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        try:
            conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def review(self, pod: dict[str, Any], uid: str = "u-1", namespace: str = "default") -> dict[str, Any]:
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": namespace,
                "operation": "CREATE",
                "object": pod,
            },
        }
        status, out = self.post(json.dumps(body).encode())
        assert status == 200, out
        assert out["kind"] == "AdmissionReview" and out["apiVersion"] == "admission.k8s.io/v1"
        assert out["response"]["uid"] == uid
        resp: dict[str, Any] = out["response"]
        return resp

    def fingerprint(self) -> str:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def webhook(api: FakeApi, tls_dir: Path) -> Iterator[Webhook]:
    api_cert = tls_dir / "api.crt"
    kubeconfig = tls_dir / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "lab",
                "clusters": [
                    {
                        "name": "lab",
                        "cluster": {"server": f"https://127.0.0.1:{api.port}", "certificate-authority": str(api_cert)},
                    }
                ],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
                "users": [{"name": "lab", "user": {"token": "test-token"}}],
            }
        )
    )
    cert, key = make_cert(tls_dir, "webhook")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(VHOSTPLUG),
            "webhook",
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--kubeconfig",
            str(kubeconfig),
            "--cache-ttl",
            "60",
        ],
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "webhook exited"
            assert time.monotonic() < deadline, "webhook did not listen"
            time.sleep(0.1)
    try:
        yield Webhook(proc, port, cert, key)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def test_virt_launcher_pod_gets_devices_and_links_folder(webhook: Webhook) -> None:
    nets = json.dumps(
        [
            {"name": "vhu-net", "namespace": "default", "interface": "pod6c270ef2f25"},
            {"name": "vhu-net"},
            {"name": "sriov"},
            {"name": "vhu-fast", "namespace": "infra"},
        ]
    )
    pod = launcher_pod(nets)
    resp = webhook.review(pod, uid="launcher-1")
    out = patched(resp, pod)
    compute, sidecar, console = out["spec"]["containers"]
    assert compute["resources"]["requests"] == {
        "memory": "1Gi",
        "vhostplug.io/vhostuser": "2",
        "vhostplug.io/vhostuser-numa0": "1",
    }
    assert compute["resources"]["limits"] == {"vhostplug.io/vhostuser": "2", "vhostplug.io/vhostuser-numa0": "1"}
    assert "intel.com/sriov" not in compute["resources"]["requests"]
    assert {"name": "vhostplug-links", "emptyDir": {}} in out["spec"]["volumes"]
    for c in (compute, sidecar):
        assert {"name": "vhostplug-links", "mountPath": "/var/run/vhostplug-links"} in c["volumeMounts"]
    assert "volumeMounts" not in console
    # idempotent: the mutated pod needs nothing more
    again = webhook.review(out, uid="launcher-2")
    assert again["allowed"] is True and "patch" not in again


def test_plain_pod_gets_devices_and_downward_api(webhook: Webhook) -> None:
    pod = {
        "metadata": {
            "name": "dpdk-app",
            "annotations": {"k8s.v1.cni.cncf.io/networks": "vhu-net, default/vhu-net@vhu2, plain"},
        },
        "spec": {"containers": [{"name": "app", "image": "dpdk"}, {"name": "metrics", "image": "exporter"}]},
    }
    out = patched(webhook.review(pod, uid="plain-1"), pod)
    app, metrics = out["spec"]["containers"]
    assert app["resources"] == {"requests": {"vhostplug.io/vhostuser": "2"}, "limits": {"vhostplug.io/vhostuser": "2"}}
    assert "resources" not in metrics
    (vol,) = [v for v in out["spec"]["volumes"] if v["name"] == "vhostplug-podnetinfo"]
    assert {i["path"]: i["fieldRef"]["fieldPath"] for i in vol["downwardAPI"]["items"]} == {
        "annotations": "metadata.annotations",
        "labels": "metadata.labels",
    }
    for c in (app, metrics):
        assert {"name": "vhostplug-podnetinfo", "mountPath": "/etc/podnetinfo", "readOnly": True} in c["volumeMounts"]


def test_pods_without_our_networks_are_untouched(webhook: Webhook) -> None:
    for nets in ("sriov", "plain, missing-nad", None):
        pod: dict[str, Any] = {"metadata": {"annotations": {}}, "spec": {"containers": [{"name": "a"}]}}
        if nets:
            pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] = nets
        resp = webhook.review(pod)
        assert resp["allowed"] is True and "patch" not in resp, resp


def test_nad_lookups_are_cached(webhook: Webhook, api: FakeApi) -> None:
    pod = {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "cached-net"}},
        "spec": {"containers": [{"name": "a"}]},
    }
    api.nads[("default", "cached-net")] = {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"}
    for i in range(3):
        assert "patch" in webhook.review(pod, uid=f"c{i}")
    assert api.hits[("default", "cached-net")] == 1


def test_api_failure_denies_with_a_clear_message(webhook: Webhook) -> None:
    pod = {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "broken"}},
        "spec": {"containers": [{"name": "a"}]},
    }
    resp = webhook.review(pod, uid="b1")
    assert resp["allowed"] is False
    assert "default/broken" in resp["status"]["message"] and resp["status"]["code"] == 503


def test_malformed_reviews_get_clear_answers_and_server_lives(webhook: Webhook) -> None:
    status, out = webhook.post(b"{not json")
    assert status == 400 and "not JSON" in out["error"]
    status, out = webhook.post(json.dumps({"kind": "AdmissionReview", "request": {"object": {}}}).encode())
    assert status == 400 and "uid" in out["error"]
    body = {"kind": "AdmissionReview", "request": {"uid": "s1", "kind": {"kind": "Service"}, "object": {}}}
    status, out = webhook.post(json.dumps(body).encode())
    assert status == 200 and out["response"]["allowed"] is True and "only Pods" in out["response"]["warnings"][0]
    bad_pod = {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": '[{"nope": 1}]'}},
        "spec": {"containers": [{"name": "a"}]},
    }
    resp = webhook.review(bad_pod, uid="bad-ann")
    assert resp["allowed"] is False and "needs a name" in resp["status"]["message"]
    assert webhook.proc.poll() is None


def test_certificate_rotation_is_picked_up(webhook: Webhook, tls_dir: Path) -> None:
    before = webhook.fingerprint()
    new_cert, new_key = make_cert(tls_dir, "rotated")
    webhook.key.write_bytes(new_key.read_bytes())
    webhook.cert.write_bytes(new_cert.read_bytes())
    deadline = time.monotonic() + 10
    while webhook.fingerprint() == before:
        assert time.monotonic() < deadline, "webhook kept serving the old certificate"
        time.sleep(0.2)
    # and it still answers reviews with the new cert
    pod = {"metadata": {}, "spec": {"containers": [{"name": "a"}]}}
    assert webhook.review(pod, uid="after-rotation")["allowed"] is True
