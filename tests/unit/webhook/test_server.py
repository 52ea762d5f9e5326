"""The HTTPS server: certificate rotation without restart, TLS versions and suites, the limits on slow or large
requests, and the health and readiness answers."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import time
from pathlib import Path

from tests.unit.webhook.pods import HEADER_TIMEOUT, wait_for
from vhostplug_testsupport.webhook import ApiServer, Webhook, make_cert, start_webhook


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


def test_not_ready_while_the_certificate_on_disk_does_not_load(api: ApiServer, tls_dir: Path) -> None:
    hook = start_webhook(api, tls_dir, stem="ready")
    try:
        good = hook.cert.read_bytes()
        hook.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        wait_for(lambda: hook.health("/readyz")[0] == 503, message="a broken certificate on disk should be unready")
        _, out = hook.health("/readyz")
        assert out["status"] == "not ready" and "do not load" in out["reason"], out
        assert hook.health("/healthz")[0] == 200  # alive: restarting would not mend the Secret
        # and the loaded certificate still serves (the client trusts it from memory: the file is broken)
        conn = http.client.HTTPSConnection(
            "127.0.0.1", hook.port, context=ssl.create_default_context(cadata=good.decode()), timeout=10
        )
        try:
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        hook.cert.write_bytes(good)
        wait_for(lambda: hook.health("/readyz")[0] == 200, message="ready again once the certificate loads")
    finally:
        hook.stop()
