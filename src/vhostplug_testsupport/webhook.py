"""A stand-in kube-apiserver for NAD reads and the real `vhostplug webhook` process, for tests, fuzzing and benches.

:class:`FakeApi` answers ``GET .../network-attachment-definitions/<name>`` like kube-apiserver (HTTPS on 127.0.0.1,
an ephemeral port, its own thread and event loop) and records every path it is asked for, so a test can prove that
nothing else was requested. :func:`start_webhook` runs ``vhostplug webhook`` against it with a kubeconfig and a
self-signed certificate, and :class:`Webhook` posts reviews to it over TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}"
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"


def make_cert(folder: Path, stem: str) -> tuple[Path, Path]:
    """A self-signed EC certificate for ``localhost``/127.0.0.1: ``(<stem>.crt, <stem>.key)`` in ``folder``."""
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    return web.json_response({**body, "message": message}, status=code)


@dataclass
class FakeApi:
    """Answers NAD GETs like kube-apiserver; counts hits per NAD and records every path requested.

    ``nads[(ns, name)]`` is the NAD's annotations, or an HTTP status to fail with.
    """

    nads: dict[tuple[str, str], dict[str, str] | int] = field(default_factory=dict)
    hits: dict[tuple[str, str], int] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    port: int = 0
    cert: Path | None = None

    async def handler(self, request: web.Request) -> web.Response:
        self.paths.append(request.raw_path)
        key = (request.match_info["ns"], request.match_info["name"])
        self.hits[key] = self.hits.get(key, 0) + 1
        nad = self.nads.get(key)
        if isinstance(nad, int):
            return _status(nad, "InternalError", "etcd is sad")
        if nad is None:
            return _status(404, "NotFound", "not found")
        return web.json_response(
            {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": key[1], "namespace": key[0], "annotations": nad},
                "spec": {"config": "{}"},
            }
        )

    async def other(self, request: web.Request) -> web.Response:
        self.paths.append(request.raw_path)
        return _status(404, "NotFound", f"{request.path} is not served by this fake")

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig that points at this fake (token auth) and return its path."""
        assert self.cert is not None
        cluster = {"server": f"https://127.0.0.1:{self.port}", "certificate-authority": str(self.cert)}
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "lab",
                    "clusters": [{"name": "lab", "cluster": cluster}],
                    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
                    "users": [{"name": "lab", "user": {"token": "test-token"}}],
                }
            )
        )
        return path


@contextlib.contextmanager
def running_api(tls_dir: Path, nads: dict[tuple[str, str], dict[str, str] | int] | None = None) -> Iterator[FakeApi]:
    """A :class:`FakeApi` served over HTTPS on 127.0.0.1 from its own thread until the block ends."""
    cert, key = make_cert(tls_dir, "api")
    fake = FakeApi(nads=dict(nads or {}), cert=cert)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner_box: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_get(NAD_PATH, fake.handler)
        app.router.add_route("*", "/{tail:.*}", fake.other)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        server = site._server
        assert server is not None
        fake.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        runner_box.append(runner)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("fake kube-apiserver did not start")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def review_body(pod: Any, uid: str = "u-1", namespace: Any = "default", kind: str = "Pod") -> dict[str, Any]:
    """An AdmissionReview v1 request as kube-apiserver sends it for a CREATE."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "namespace": namespace,
            "operation": "CREATE",
            "object": pod,
        },
    }


@dataclass
class Webhook:
    """A running `vhostplug webhook` process and a TLS client for it."""

    proc: subprocess.Popen[bytes]
    port: int
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def post(self, body: bytes, timeout: float = 30) -> tuple[int, Any]:
        """POST ``body`` to /mutate; the status and the decoded JSON answer."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(), timeout=timeout)
        try:
            conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def review(self, pod: Any, uid: str = "u-1", namespace: Any = "default") -> dict[str, Any]:
        """Send a Pod review; assert a well-formed AdmissionReview answer for ``uid``; its ``response``."""
        status, out = self.post(json.dumps(review_body(pod, uid, namespace)).encode())
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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_webhook(api: FakeApi, tls_dir: Path, *extra: str, stem: str = "webhook", **popen: Any) -> Webhook:
    """Start `vhostplug webhook` (this interpreter's entry point) against ``api``; wait until it listens."""
    kubeconfig = api.kubeconfig(tls_dir / f"{stem}.kubeconfig")
    cert, key = make_cert(tls_dir, stem)
    port = free_port()
    cmd = [sys.executable, "-m", "vhostplug.cli", "webhook", "--cert", str(cert), "--key", str(key)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--kubeconfig", str(kubeconfig), "--cache-ttl", "60", *extra]
    proc = subprocess.Popen(cmd, **popen)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"webhook exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("webhook did not listen within 20 s") from None
            time.sleep(0.1)
    return Webhook(proc, port, cert, key)
