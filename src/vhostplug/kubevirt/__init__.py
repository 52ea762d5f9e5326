"""KubeVirt integration: the network binding sidecar (hooks gRPC) and the pure domain XML rewrite (the webhook that
gives virt-launcher pods their devices is :mod:`vhostplug.webhook`)."""
