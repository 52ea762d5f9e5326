"""TLS: certificate rotation without restart, versions and suites, half-open handshakes cut off, and readiness\nwhile the certificate on disk does not load."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from pathlib import Path

from tests.unit.webhook.pods import CUT_OFF, tls_client, wait_for
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
    assert _handshake(webhook.port, tls_client(ssl.TLSVersion.TLSv1_3)) is not None
    assert _handshake(webhook.port, tls_client(ssl.TLSVersion.TLSv1_2)) in {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    }
    cbc = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"
    assert _handshake(webhook.port, tls_client(ssl.TLSVersion.TLSv1_2, cbc)) is None
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        assert _handshake(webhook.port, tls_client(old)) is None
    assert webhook.review({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, uid="after-tls")["allowed"]


def _wait_closed(sock: socket.socket, deadline: float) -> None:
    """Read (an alert, say) until the server closes; a timeout past ``deadline`` fails."""
    while True:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not sock.recv(4096):
                return
        except ConnectionResetError:
            return


def test_unfinished_tls_handshakes_are_cut_off(impatient_webhook: Webhook) -> None:
    webhook = impatient_webhook
    conns = []
    for n in range(30):
        raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=5)
        if n % 2:
            raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        conns.append(raw)
    deadline = time.monotonic() + CUT_OFF + 8
    try:
        for raw in conns:
            _wait_closed(raw, deadline)  # a socket.timeout here: the server kept it open
    finally:
        for raw in conns:
            raw.close()
    assert webhook.review({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}, uid="after-hs")["allowed"]


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
