"""The webhook as a cluster runs it: `vhostplug webhook` over TLS, NADs read through lightkube from a local HTTPS
stand-in for kube-apiserver, JSONPatch answers applied back onto the pod, cert rotation picked up without restart."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vhostplug_testsupport.webhook import FakeApi, Webhook, make_cert, review_body, running_api, start_webhook

NADS: dict[tuple[str, str], dict[str, str] | int] = {
    ("default", "vhu-net"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"},
    ("infra", "vhu-fast"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser-numa0"},
    ("default", "sriov"): {"k8s.v1.cni.cncf.io/resourceName": "intel.com/sriov"},
    ("default", "plain"): {},
    ("default", "broken"): 500,
    ("default", "vh"): {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"},
}
HEADER_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def api(tls_dir: Path) -> Iterator[FakeApi]:
    with running_api(tls_dir, NADS) as fake:
        yield fake


@pytest.fixture(scope="module")
def webhook(api: FakeApi, tls_dir: Path) -> Iterator[Webhook]:
    hook = start_webhook(api, tls_dir, "--header-timeout", str(HEADER_TIMEOUT))
    try:
        yield hook
    finally:
        hook.stop()


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


# ---- hostile and malformed input (each once reproduced against the webhook before its fix) ---------------------------


def net_pod(networks: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": networks}},
        "spec": {"containers": [{"name": "a"}]},
    }


def test_deeply_nested_bodies_get_400_not_a_traceback(webhook: Webhook) -> None:
    status, out = webhook.post(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    assert status == 400 and "nested deeper" in out["error"]
    status, out = webhook.post(b"[" * 200_000)
    assert status == 400 and out["error"]
    # decodable, but deeper than any pod: an AdmissionReview denial naming the problem
    deep: Any = "x"
    for _ in range(200):
        deep = {"k": deep}
    pod = {"metadata": {"annotations": {"deep": deep}}, "spec": {"containers": [{"name": "a"}]}}
    status, out = webhook.post(json.dumps(review_body(pod, uid="deep-1")).encode())
    assert status == 200 and out["response"]["uid"] == "deep-1"
    assert out["response"]["allowed"] is False and out["response"]["status"]["code"] == 400
    assert "nested deeper" in out["response"]["status"]["message"]
    assert webhook.proc.poll() is None


@pytest.mark.parametrize(
    ("pod", "field"),
    [
        ({"metadata": "x", "spec": {"containers": [{"name": "a"}]}}, "metadata"),
        ({"metadata": {}, "spec": {"containers": "x"}}, "spec.containers"),
        ({"metadata": {}, "spec": {"containers": ["x"]}}, "spec.containers[0]"),
        ({"metadata": {}, "spec": {"containers": [{"name": "a", "resources": "x"}]}}, "spec.containers[0].resources"),
        (
            {"metadata": {}, "spec": {"containers": [{"name": "a", "resources": {"limits": []}}]}},
            "spec.containers[0].resources.limits",
        ),
        ({"metadata": {"labels": "x"}, "spec": {"containers": [{"name": "a"}]}}, "metadata.labels"),
        ({"metadata": {"annotations": ["x"]}, "spec": {"containers": [{"name": "a"}]}}, "metadata.annotations"),
        ({"metadata": {}, "spec": {"containers": [{"name": "a"}], "volumes": "x"}}, "spec.volumes"),
        ({"metadata": {}, "spec": {"containers": [{"name": "a", "volumeMounts": [3]}]}}, "volumeMounts[0]"),
        ({"metadata": {}, "spec": "x"}, "spec"),
    ],
)
def test_wrongly_typed_pod_fields_are_denied_naming_the_field(
    webhook: Webhook, pod: dict[str, Any], field: str
) -> None:
    pod["metadata"] = (
        pod["metadata"]
        if not isinstance(pod["metadata"], dict)
        else {
            **pod["metadata"],
            **({} if "annotations" in pod["metadata"] else {"annotations": {"k8s.v1.cni.cncf.io/networks": "vhu-net"}}),
        }
    )
    resp = webhook.review(pod, uid="typed")
    assert resp["allowed"] is False and resp["status"]["code"] == 400, resp
    assert field in resp["status"]["message"] and "internal error" not in resp["status"]["message"]


def test_a_pod_review_without_a_pod_object_is_denied(webhook: Webhook) -> None:
    for obj in ("x", ["a"], 3):
        resp = webhook.review(obj, uid="obj")
        assert resp["allowed"] is False and resp["status"]["code"] == 400
        assert "request.object must be an object" in resp["status"]["message"]


def test_bad_namespace_of_the_request_is_denied(webhook: Webhook) -> None:
    for ns in (["x"], "Default", "a/b"):
        resp = webhook.review(net_pod("vhu-net"), uid="ns", namespace=ns)
        assert resp["allowed"] is False and resp["status"]["code"] == 400 and "namespace" in resp["status"]["message"]


@pytest.mark.parametrize(
    "networks",
    [
        "x/../../../../../../../api/v1/namespaces/kube-system/secrets/admin-token",
        "vh#frag",
        "vh?watch=1",
        "default/vh/extra",
        "../vh",
        "VH",
        "\ud800",
        json.dumps([{"name": "\ud800"}]),
        json.dumps([{"name": "../../../api/v1/namespaces/kube-system/secrets/admin-token"}]),
        json.dumps([{"name": "vh", "namespace": "kube-system/secrets"}]),
        json.dumps([{"name": "vh", "namespace": 7}]),
        "a" * 254,
    ],
)
def test_network_names_are_validated_before_any_request(webhook: Webhook, api: FakeApi, networks: str) -> None:
    before = list(api.paths)
    resp = webhook.review(net_pod(networks), uid="attack")
    assert resp["allowed"] is False and resp["status"]["code"] == 400, resp
    assert (
        "not a network name" in resp["status"]["message"]
        or "not a namespace" in resp["status"]["message"]
        or ("not of the form" in resp["status"]["message"])
    )
    assert api.paths == before, "the webhook asked the API about an invalid name"


def test_the_resolver_escapes_names_in_the_url(api: FakeApi, tls_dir: Path) -> None:
    from vhostplug.kubevirt.webhook import LightkubeResolver

    resolver = LightkubeResolver.from_kubeconfig(api.kubeconfig(tls_dir / "resolver.kubeconfig"), ttl=0)
    attack = "x/../../../../../../../api/v1/namespaces/kube-system/secrets/admin-token"

    async def ask() -> list[str | None]:
        try:
            return [await resolver.resource_of("default", attack), await resolver.resource_of("default", "vh#frag")]
        finally:
            await resolver.client.close()

    start = len(api.paths)
    assert asyncio.run(ask()) == [None, None]
    seen = api.paths[start:]
    assert len(seen) == 2, seen
    assert all(
        p.startswith("/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/") for p in seen
    )
    assert seen[0].endswith(
        "/x%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fkube-system%2Fsecrets%2Fadmin-token"
    )
    assert seen[1].endswith("/vh%23frag")
    assert not any("/secrets/" in p for p in seen)


def test_networks_per_pod_are_bounded(webhook: Webhook, api: FakeApi) -> None:
    before = len(api.paths)
    resp = webhook.review(net_pod(", ".join(f"n{i}" for i in range(2000))), uid="many")
    assert resp["allowed"] is False and resp["status"]["code"] == 400 and "at most 64" in resp["status"]["message"]
    resp = webhook.review(net_pod(json.dumps([{"name": f"n{i}"} for i in range(65)])), uid="many-json")
    assert resp["allowed"] is False and "at most 64" in resp["status"]["message"]
    assert len(api.paths) == before
    # 64 mentions of one network: one lookup, 64 devices
    api.nads[("default", "uniq-net")] = {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"}
    pod = net_pod(", ".join(["uniq-net"] * 64))
    out = patched(webhook.review(pod, uid="dup"), pod)
    assert out["spec"]["containers"][0]["resources"]["requests"] == {"vhostplug.io/vhostuser": "64"}
    assert api.hits[("default", "uniq-net")] == 1


def _tls_client(version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers is not None or version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def _handshake(port: int, ctx: ssl.SSLContext) -> str | None:
    """The negotiated cipher, or None when the server refused."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                cipher = tls.cipher()
                return cipher[0] if cipher else None
        except (ssl.SSLError, ConnectionResetError):
            return None


def test_tls_versions_and_suites(webhook: Webhook) -> None:
    assert _handshake(webhook.port, _tls_client(ssl.TLSVersion.TLSv1_3)) is not None
    assert _handshake(webhook.port, _tls_client(ssl.TLSVersion.TLSv1_2)) in {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    }
    cbc = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"
    assert _handshake(webhook.port, _tls_client(ssl.TLSVersion.TLSv1_2, cbc)) is None
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        assert _handshake(webhook.port, _tls_client(old)) is None
    assert webhook.review({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, uid="after-tls")["allowed"]


def test_unfinished_headers_are_cut_off(webhook: Webhook) -> None:
    ctx = _tls_client(ssl.TLSVersion.TLSv1_3)
    conns = []
    for _ in range(40):
        tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", webhook.port), timeout=5))
        tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n")
        conns.append(tls)
    # a connection that sent its head but only part of its body is cut off too
    slow_body = ctx.wrap_socket(socket.create_connection(("127.0.0.1", webhook.port), timeout=5))
    slow_body.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
    deadline = time.monotonic() + HEADER_TIMEOUT + 8
    try:
        for tls in conns:
            tls.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ConnectionResetError, ssl.SSLError):
                assert tls.recv(1) == b""
        slow_body.settimeout(max(0.1, deadline - time.monotonic()))
        head = slow_body.recv(4096)
        assert head.startswith(b"HTTP/1.1 408"), head
    finally:
        for tls in [*conns, slow_body]:
            tls.close()
    assert webhook.review({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, uid="after-slow")["allowed"]


def _wait_closed(sock: socket.socket, deadline: float) -> None:
    """Read (an alert, say) until the server closes; a timeout past ``deadline`` fails."""
    while True:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not sock.recv(4096):
                return
        except ConnectionResetError:
            return


def test_unfinished_tls_handshakes_are_cut_off(webhook: Webhook) -> None:
    conns = []
    for n in range(30):
        raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=5)
        if n % 2:
            raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        conns.append(raw)
    deadline = time.monotonic() + HEADER_TIMEOUT + 8
    try:
        for raw in conns:
            _wait_closed(raw, deadline)  # a socket.timeout here: the server kept it open
    finally:
        for raw in conns:
            raw.close()
    assert webhook.review({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, uid="after-hs")["allowed"]


def test_oversize_bodies_are_refused_before_they_are_read(webhook: Webhook) -> None:
    ctx = webhook.context()
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        # announce 200 MB and send none of it: the answer comes at once
        tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 209715200\r\n\r\n")
        head = tls.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head
    # chunked (no length): read up to the limit only
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=ctx, timeout=30)
    try:
        conn.request("POST", "/mutate", body=iter([b"x" * 1024 * 1024] * 9), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413 and "bytes a review may have" in json.loads(resp.read())["error"]
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending: also a refusal
    finally:
        conn.close()
    assert webhook.review({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, uid="after-413")["allowed"]
