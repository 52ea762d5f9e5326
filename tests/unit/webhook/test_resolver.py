"""NAD lookups through the Kubernetes API: cached, one read per NAD however many reviews miss at once, escaped in
the URL, an API failure a clear 503 denial."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.unit.webhook.pods import net_pod, ours, patched, wait_for
from vhostplug_testsupport.webhook import (
    ApiServer,
    Webhook,
    hold_nads,
    nad_hits,
    nads_in_flight,
    paths,
    put_nad,
    review_body,
    start_webhook,
)


def test_nad_lookups_are_cached(webhook: Webhook, api: ApiServer) -> None:
    pod = {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "cached-net"}},
        "spec": {"containers": [{"name": "a"}]},
    }
    put_nad(api, "default", "cached-net", {"k8s.v1.cni.cncf.io/resourceName": "vhostplug.io/vhostuser"})
    for i in range(3):
        assert "patch" in webhook.review(pod, uid=f"c{i}")
    assert nad_hits(api, "default", "cached-net") == 1


def test_api_failure_denies_with_a_clear_message(webhook: Webhook) -> None:
    pod = {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "broken"}},
        "spec": {"containers": [{"name": "a"}]},
    }
    resp = webhook.review(pod, uid="b1")
    assert resp["allowed"] is False
    assert "default/broken" in resp["status"]["message"] and resp["status"]["code"] == 503


def test_the_resolver_escapes_names_in_the_url(api: ApiServer, tls_dir: Path) -> None:
    from vhostplug.webhook.resolver import LightkubeResolver

    resolver = LightkubeResolver.from_kubeconfig(api.kubeconfig(tls_dir / "resolver.kubeconfig"), ttl=0)
    attack = "x/../../../../../../../api/v1/namespaces/kube-system/secrets/admin-token"

    async def ask() -> list[str | None]:
        try:
            return [await resolver.resource_of("default", attack), await resolver.resource_of("default", "vh#frag")]
        finally:
            await resolver.client.close()

    start = len(paths(api))
    assert asyncio.run(ask()) == [None, None]
    seen = paths(api)[start:]
    assert len(seen) == 2, seen
    assert all(
        p.startswith("/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/") for p in seen
    )
    assert seen[0].endswith(
        "/x%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fkube-system%2Fsecrets%2Fadmin-token"
    )
    assert seen[1].endswith("/vh%23frag")
    assert not any("/secrets/" in p for p in seen)


def test_concurrent_misses_for_one_nad_make_one_api_read(api: ApiServer, tls_dir: Path) -> None:
    """20 reviews naming the same 6 uncached NADs (each list rotated, so they ask in different orders) at once: the
    API is asked 6 times, once per NAD; the reviews that missed while a read was under way waited for it."""
    nets = [f"sf-{i}" for i in range(6)]
    ours(api, *nets)
    pods = [net_pod(", ".join(nets[i % 6 :] + nets[: i % 6])) for i in range(20)]
    bodies = [json.dumps(review_body(pod, uid=f"sf{i}")).encode() for i, pod in enumerate(pods)]
    hook = start_webhook(api, tls_dir, "--max-reviews", "20", stem="sf")
    hold_nads(api)
    try:
        with ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(hook.post, b) for b in bodies]
            wait_for(lambda: hook.health("/readyz")[1]["reviews"]["in_flight"] == 20, message="20 reviews in flight")
            # every review waits on its first NAD: six reads, one per NAD
            api.wait_for(lambda: nads_in_flight(api) >= 6)
            assert nads_in_flight(api) == 6
            api.release()
            answers = [f.result(60) for f in futures]
    finally:
        api.release()
        hook.stop()
    for pod, (status, out) in zip(pods, answers, strict=True):
        assert status == 200 and out["response"]["allowed"] is True, out
        assert patched(out["response"], pod)["spec"]["containers"][0]["resources"]["requests"] == {
            "vhostplug.io/vhostuser": "6"
        }
    assert {n: nad_hits(api, "default", n) for n in nets} == {n: 1 for n in nets}
