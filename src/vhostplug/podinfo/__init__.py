"""The in-pod helper (standard library only): find this pod's vhost-user / vDPA interfaces and print DPDK args.

Importable without the rest of vhostplug (DPDK images vendor this folder)::

    from vhostplug.podinfo import Places, find, dpdk_args
    ifaces = find(Places()).interfaces
    eal = dpdk_args(ifaces)          # ["--vdev", "net_virtio_user0,path=...,server=1,packed_vq=1", ...]
"""

from vhostplug.podinfo.dpdk import dpdk_args, dpdk_vdevs, not_ready
from vhostplug.podinfo.goquote import parse_annotations, unquote
from vhostplug.podinfo.sources import Findings, Places, PodInterface, find

__all__ = [
    "Findings",
    "Places",
    "PodInterface",
    "dpdk_args",
    "dpdk_vdevs",
    "find",
    "not_ready",
    "parse_annotations",
    "unquote",
]
