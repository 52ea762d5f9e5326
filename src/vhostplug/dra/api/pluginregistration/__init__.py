"""Generated stubs of k8s.io/kubelet/pkg/apis/pluginregistration/v1 (kubelet's plugin watcher)."""
