"""vhostplug: vhost-user and vDPA interfaces for Kubernetes pods and KubeVirt VMs on an OVS-DPDK dataplane."""

__version__ = "0.1.0"
