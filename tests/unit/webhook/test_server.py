"""The HTTPS server: the limits on slow or large requests, health and readiness, and the shutdown."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import ssl
import time
from pathlib import Path

from tests.unit.webhook.pods import CUT_OFF, tls_client, wait_for
from vhostplug_testsupport.webhook import ApiServer, Webhook, start_webhook


def test_unfinished_headers_are_cut_off(impatient_webhook: Webhook) -> None:
    webhook = impatient_webhook
    ctx = tls_client(ssl.TLSVersion.TLSv1_3)
    conns = []
    for _ in range(40):
        tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", webhook.port), timeout=5))
        tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n")
        conns.append(tls)
    # a connection that sent its head but only part of its body is cut off too
    slow_body = ctx.wrap_socket(socket.create_connection(("127.0.0.1", webhook.port), timeout=5))
    slow_body.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
    deadline = time.monotonic() + CUT_OFF + 8
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


def test_health_and_readiness(webhook: Webhook) -> None:
    for path, word in (("/healthz", "ok"), ("/readyz", "ready")):
        status, out = webhook.health(path)  # the plain-HTTP probe port
        assert status == 200 and out["status"] == word, out
        assert out["reviews"]["max_in_flight"] == 8 and out["connections"]["max"] == 64, out
        conn = http.client.HTTPSConnection("127.0.0.1", webhook.port, context=webhook.context(), timeout=10)
        try:  # and the TLS port
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["status"] == word
        finally:
            conn.close()


def test_on_sigterm_not_ready_at_once_and_serving_until_the_delay_ends(api: ApiServer, tls_dir: Path) -> None:
    hook = start_webhook(api, tls_dir, "--shutdown-delay", "60", stem="drain")
    try:
        assert hook.health("/readyz")[0] == 200
        hook.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: hook.health("/readyz")[0] == 503, message="not ready once SIGTERM arrived")
        assert hook.health("/readyz")[1]["reason"] == "shutting down"
        assert hook.health("/healthz")[0] == 200
        # reviews the API server still routes here meanwhile are answered
        assert hook.review({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, uid="draining")["allowed"]
        hook.proc.send_signal(signal.SIGTERM)  # a second signal ends the delay
        assert hook.proc.wait(20) == 0
    finally:
        hook.stop()
