"""kubelet PodResources v1 API stubs (generated from proto/vhostplug/lab/podresources/v1/api.proto)."""
