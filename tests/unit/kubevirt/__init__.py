"""Unit tests of the KubeVirt binding: protos, the domain rewrite, links, the sidecar over gRPC, the webhook."""
