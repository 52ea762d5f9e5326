"""What the webhook holds at once is bounded, seen through the real process and the stand-in API (whose NAD answers a
test can hold): reviews in flight, reviews waiting (then 429 with a Kubernetes Status), connections, and the RSS after
400 reviews sent at once."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.unit.webhook.pods import net_pod, ours, rss_mb, wait_for
from vhostplug_testsupport.webhook import (
    ApiServer,
    Webhook,
    hold_nads,
    nad_hits,
    nads_in_flight,
    post_at_once,
    review_body,
    start_webhook,
)


def body(network: str, uid: str) -> bytes:
    return json.dumps(review_body(net_pod(network), uid=uid)).encode()


def reviews(hook: Webhook) -> dict[str, int]:
    status, out = hook.health("/readyz")
    assert status == 200, out
    stats: dict[str, int] = out["reviews"]
    return stats


def post_with_headers(hook: Webhook, raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    conn = http.client.HTTPSConnection("127.0.0.1", hook.port, context=hook.context(), timeout=30)
    try:
        conn.request("POST", "/mutate", body=raw, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture
def held(api: ApiServer) -> Iterator[ApiServer]:
    """The stand-in API holds every NAD answer until the test releases it (released at the end in any case)."""
    hold_nads(api)
    try:
        yield api
    finally:
        api.release()


def test_at_most_n_reviews_in_flight_the_next_wait_and_then_429(held: ApiServer, tls_dir: Path) -> None:
    nets = [f"gate-{i}" for i in range(6)]
    ours(held, *nets)
    hook = start_webhook(held, tls_dir, "--max-reviews", "2", "--max-waiting", "3", "--queue-timeout", "60", stem="g")
    try:
        with ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(hook.post, body(n, f"g{i}")) for i, n in enumerate(nets[:5])]
            held.wait_for(lambda: nads_in_flight(held) >= 2)
            wait_for(lambda: reviews(hook)["waiting"] == 3, message="three reviews should wait for a slot")
            # two decoded and being answered, three waiting: the sixth is refused at once, in the API's own format
            status, headers, out = post_with_headers(hook, body(nets[5], "g5"))
            assert status == 429 and headers["Retry-After"] == "1", out
            assert out["kind"] == "Status" and out["code"] == 429 and out["reason"] == "TooManyRequests", out
            assert "too many reviews at once" in str(out["message"])
            assert nads_in_flight(held) == 2 and reviews(hook)["in_flight"] == 2
            held.release()
            answers = [f.result(60) for f in futures]
        for status, out in answers:
            assert status == 200 and out["response"]["allowed"] is True and "patch" in out["response"], out
        stats = reviews(hook)
        assert stats["peak_in_flight"] == 2 and stats["peak_waiting"] == 3 and stats["refused"] == 1, stats
        assert stats["in_flight"] == 0 and stats["waiting"] == 0
        assert nad_hits(held, "default", nets[5]) == 0  # the refused review was never read
    finally:
        hook.stop()


def test_a_review_that_waits_too_long_gets_429(held: ApiServer, tls_dir: Path) -> None:
    ours(held, "slow-0", "slow-1")
    hook = start_webhook(held, tls_dir, "--max-reviews", "1", "--queue-timeout", "0.5", stem="q")
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(hook.post, body("slow-0", "s0"))
            held.wait_for(lambda: nads_in_flight(held) >= 1)
            status, _, out = post_with_headers(hook, body("slow-1", "s1"))
            assert status == 429 and "no review slot within 0.5s" in str(out["message"]), out
            held.release()
            status, answer = first.result(60)
        assert status == 200 and answer["response"]["uid"] == "s0" and "patch" in answer["response"]
        assert reviews(hook)["refused"] == 1
    finally:
        hook.stop()


def _tls(hook: Webhook) -> ssl.SSLSocket:
    return hook.context().wrap_socket(
        socket.create_connection(("127.0.0.1", hook.port), timeout=30), server_hostname="localhost"
    )


def test_connections_beyond_the_limit_wait_to_be_accepted(api: ApiServer, tls_dir: Path) -> None:
    hook = start_webhook(api, tls_dir, "--max-connections", "3", stem="c")
    try:
        first = [_tls(hook) for _ in range(3)]
        fourth: list[ssl.SSLSocket] = []
        waiter = threading.Thread(target=lambda: fourth.append(_tls(hook)))
        waiter.start()
        status, out = hook.health("/healthz")  # the probe port is outside the limit
        assert status == 200 and out["connections"] == {"open": 3, "peak": 3, "max": 3}, out
        assert waiter.is_alive() and not fourth  # its handshake waits: the process has not accepted it
        first[0].close()
        waiter.join(20)
        assert fourth, "the fourth connection was not accepted after one closed"
        tls = fourth[0]
        assert _review_on(tls, body("vhu-net", "c4")).startswith(b"HTTP/1.1 200")
        for s in [*first[1:], tls]:
            s.close()
        wait_for(lambda: hook.health("/healthz")[1]["connections"]["open"] == 0, message="connections not freed")
        assert hook.health("/healthz")[1]["connections"]["peak"] == 3
    finally:
        hook.stop()


def test_rss_stays_under_100_mb_after_400_reviews_at_once(webhook: Webhook) -> None:
    answers, _ = post_at_once(webhook.port, webhook.context(), [body("vhu-net", f"r{i}") for i in range(400)], settle=0)
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert statuses.count(200) >= 200, statuses.count(200)  # a 3 s queue answers most of them even on a busy machine
    for status, raw in answers:
        out = json.loads(raw)
        if status == 429:
            assert out["kind"] == "Status" and out["code"] == 429
        else:
            assert out["response"]["allowed"] is True and "patch" in out["response"]
    health = webhook.health("/healthz")[1]
    assert health["connections"]["peak"] <= 64 and health["reviews"]["peak_in_flight"] <= 8, health
    assert rss_mb(webhook.proc.pid) <= 100.0


def test_idle_kept_alive_connections_cannot_take_every_slot(api: ApiServer, tls_dir: Path) -> None:
    """Below 3/4 of the slots a connection is kept alive after its answer; from there on every answer closes its
    connection, so kept-alive idle connections (kube-apiserver keeps several) leave room for new ones."""
    hook = start_webhook(api, tls_dir, "--max-connections", "4", stem="idle")
    try:
        idle = [_tls(hook) for _ in range(2)]
        for n, tls in enumerate(idle):
            head = _review_on(tls, body("vhu-net", f"i{n}"), 4096)
            assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" not in head, head  # kept alive
        for n in range(5):  # two idle, one more makes three of four: answered, then closed
            tls = _tls(hook)
            head = _review_on(tls, body("vhu-net", f"n{n}"), 4096)
            assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head, head
            tls.close()
        assert hook.health("/healthz")[1]["connections"]["peak"] <= 4
        for tls in idle:
            tls.close()
    finally:
        hook.stop()


def _review_on(tls: ssl.SSLSocket, raw: bytes, size: int = 12) -> bytes:
    """Send one review on an open connection (HTTP/1.1: kept alive unless the server says otherwise); the start of
    the answer."""
    tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)
    return tls.recv(size)
