"""KubeVirt integration: the network binding sidecar (hooks gRPC), the pure domain XML rewrite, and the webhook."""
