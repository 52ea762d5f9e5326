"""NAD lookups through the Kubernetes API: cached, escaped in the URL, an API failure a clear 503 denial."""

from __future__ import annotations

import asyncio
from pathlib import Path

from vhostplug_testsupport.webhook import ApiServer, Webhook, nad_hits, paths, put_nad


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
