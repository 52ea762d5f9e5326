"""NAD reads from the lab's stand-in kube-apiserver and the real `vhostplug webhook` process, for tests, fuzzing
and benches.

:func:`running_api` serves NetworkAttachmentDefinitions from a :class:`~vhostplug.lab.apiserver.ApiServer` over
HTTPS (its request log lets a test prove that nothing else was requested); :func:`start_webhook` runs
``vhostplug webhook`` against it with a kubeconfig and a self-signed certificate, and :class:`Webhook` posts reviews
to it over TLS and asks its health port; :func:`post_at_once` sends many reviews together. A test holds the NAD
answers (:func:`hold_nads`) to see how many reads the webhook has under way at once (:func:`nads_in_flight`).
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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhostplug.lab.apiserver import ApiServer, make_cert

__all__ = ["ApiServer", "make_cert"]

NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}"
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def put_nad(api: ApiServer, ns: str, name: str, annotations: dict[str, str] | int) -> None:
    """Serve a NAD with these annotations, or make every GET of it fail with that HTTP status."""
    if isinstance(annotations, int):
        api.fail("GET", NAD_PATH.format(ns=ns, name=name), annotations, times=None)
        return
    api.put(
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "spec": {"config": "{}"},
        }
    )


def nad_hits(api: ApiServer, ns: str, name: str) -> int:
    """How often the NAD was asked for."""
    path = NAD_PATH.format(ns=ns, name=name)
    return sum(1 for r in api.requests if r.method == "GET" and r.path == path)


def hold_nads(api: ApiServer) -> None:
    """Leave every NAD read unanswered until ``api.release()``."""
    api.hold("GET", NAD_PATH.split("{ns}")[0])


def nads_in_flight(api: ApiServer) -> int:
    """NAD reads asked and not answered yet."""
    return len(api.in_flight("GET", NAD_PATH.split("{ns}")[0]))


def paths(api: ApiServer) -> list[str]:
    """Every path requested so far (as sent), in order."""
    return [r.path for r in api.requests]


@contextlib.contextmanager
def running_api(tls_dir: Path, nads: dict[tuple[str, str], dict[str, str] | int] | None = None) -> Iterator[ApiServer]:
    """A stand-in kube-apiserver on HTTPS (token auth) serving ``nads`` until the block ends."""
    with ApiServer(tls_dir=tls_dir, token="test-token") as api:
        for (ns, name), annotations in (nads or {}).items():
            put_nad(api, ns, name, annotations)
        yield api


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


async def _one_post(port: int, ctx: ssl.SSLContext, body: bytes, start: asyncio.Event) -> tuple[int, bytes]:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    except (ConnectionError, ssl.SSLError):
        return 0, b""
    try:
        await start.wait()
        head = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        answer = await reader.read()
        status = int(answer[9:12] or 0)
        return status, answer.partition(b"\r\n\r\n")[2]
    except (ConnectionError, ssl.SSLError):
        return 0, b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


def post_at_once(
    port: int, ctx: ssl.SSLContext, bodies: list[bytes], settle: float = 0.5
) -> tuple[list[tuple[int, bytes]], float]:
    """POST every body to /mutate at once, each on its own TLS connection. ``settle`` > 0: the connections are opened
    first and given that long for their handshakes, so the reviews rather than the handshakes arrive together (the
    bench's way); 0: each review is sent as soon as its connection is up. The ``(status, body)`` of each answer in
    order (status 0: the connection failed), and the seconds from the send to the last answer."""

    async def run() -> tuple[list[tuple[int, bytes]], float]:
        start = asyncio.Event()
        tasks = [asyncio.create_task(_one_post(port, ctx, b, start)) for b in bodies]
        if settle > 0:
            await asyncio.sleep(settle)
        t0 = time.monotonic()
        start.set()
        answers = await asyncio.gather(*tasks)
        return list(answers), time.monotonic() - t0

    return asyncio.run(run())


@dataclass
class Webhook:
    """A running `vhostplug webhook` process and a TLS client for it."""

    proc: subprocess.Popen[bytes]
    port: int
    cert: Path
    key: Path
    health_port: int = 0

    def health(self, path: str, timeout: float = 10) -> tuple[int, Any]:
        """GET ``path`` on the plain-HTTP health port; the status and the decoded JSON answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

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


def start_webhook(api: ApiServer, tls_dir: Path, *extra: str, stem: str = "webhook", **popen: Any) -> Webhook:
    """Start `vhostplug webhook` (this interpreter's entry point) against ``api``; wait until it listens."""
    kubeconfig = api.kubeconfig(tls_dir / f"{stem}.kubeconfig")
    cert, key = make_cert(tls_dir, stem)
    port, health_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "vhostplug.cli", "webhook", "--cert", str(cert), "--key", str(key)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--kubeconfig", str(kubeconfig), "--cache-ttl", "60"]
    cmd += ["--health-port", str(health_port), *extra]
    proc = subprocess.Popen(cmd, **popen)
    deadline = time.monotonic() + 20
    # the review port listens a moment before the health port: a test may ask either at once
    for listening in (port, health_port):
        while True:
            try:
                socket.create_connection(("127.0.0.1", listening), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"webhook exited with {proc.returncode}") from None
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"webhook did not listen on {listening} within 20 s") from None
                time.sleep(0.05)
    return Webhook(proc, port, cert, key, health_port)
