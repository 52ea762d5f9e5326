"""NAD reads from the lab's stand-in kube-apiserver and the real `vhostplug webhook` process, for tests, fuzzing
and benches.

:func:`running_api` serves NetworkAttachmentDefinitions from a :class:`~vhostplug.lab.apiserver.ApiServer` over
HTTPS (its request log lets a test prove that nothing else was requested); :func:`start_webhook` runs
``vhostplug webhook`` against it with a kubeconfig and a self-signed certificate, and :class:`Webhook` posts reviews
to it over TLS.
"""

from __future__ import annotations

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


def start_webhook(api: ApiServer, tls_dir: Path, *extra: str, stem: str = "webhook", **popen: Any) -> Webhook:
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
