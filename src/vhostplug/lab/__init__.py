"""The local lab: a private OVS-DPDK, lab pods and VMs, a lab kubelet, and the demo that wires them together."""
