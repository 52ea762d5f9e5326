"""The in-pod helper (standard library only): find this pod's vhost-user / vDPA interfaces and print DPDK args."""
