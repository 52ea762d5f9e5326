"""Generated stubs of k8s.io/kubelet/pkg/apis/dra/v1 (the DRAPlugin service kubelet calls)."""
