"""Functional tests of the KubeVirt binding with real libvirt, QEMU and OVS-DPDK."""
