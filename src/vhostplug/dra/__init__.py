"""vhostplug as a Kubernetes DRA driver (``resource.k8s.io/v1``): the node side (kubelet plugin: registration,
NodePrepareResources / NodeUnprepareResources, CDI specs, KEP-5304 device metadata, claim status) and the
ResourceSlices it publishes. See docs/dra.md."""
