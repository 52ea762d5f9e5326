"""Generated stubs of k8s.io/kubelet/pkg/apis/dra/v1beta1 (the same messages as v1, without share_id)."""
