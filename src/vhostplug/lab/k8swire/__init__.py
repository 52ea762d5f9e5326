"""Stubs of vhostplug's minimal Kubernetes protobuf subset (generated from proto/vhostplug/lab/k8swire/k8s.proto)."""
