"""kubelet PodResources API (served by the lab kubelet)."""
