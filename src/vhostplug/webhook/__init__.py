"""The mutating admission webhook (`vhostplug webhook`): device requests and volumes for pods on vhostplug networks.

It sees every pod the MutatingWebhookConfiguration sends it (KubeVirt's virt-launcher pods and plain pods alike), so it
lives outside ``kubevirt/``. One job per module, each arrow pointing down the list:

- :mod:`.networks`: the Multus ``k8s.v1.cni.cncf.io/networks`` annotation, parsed and checked (DNS-1123 names).
- :mod:`.config`: the webhook's settings (:class:`~.config.WebhookConfig`).
- :mod:`.resolver`: which resource a NetworkAttachmentDefinition names, read through the Kubernetes API and cached.
- :mod:`.patch`: the JSONPatch that adds device requests, the links folder or the downward-API volume.
- :mod:`.review`: an AdmissionReview v1 decoded, checked and answered.
- :mod:`.server`: HTTPS (aiohttp), TLS reload, limits on bodies, time and concurrency, health, memory hand-back.
- :mod:`.cli`: the ``vhostplug webhook`` command.
"""
