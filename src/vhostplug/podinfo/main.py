"""Entry point of `vhostplug podinfo` (standard library only): argparse, waiting, JSON or DPDK output.

Exit codes: 0 found (and ready, with ``--wait``); 1 nothing found, or ``--wait`` timed out; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vhostplug.podinfo.dpdk import dpdk_vdevs, not_ready
from vhostplug.podinfo.sources import Findings, Places, find


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vhostplug podinfo",
        description="Find this pod's vhost-user and vDPA interfaces (KubeVirt network-info, the downward API "
        "annotations' network-status device-info, a given Multus network-status, kuryr-style config files) and "
        "print them as JSON or as DPDK --vdev arguments.",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON array of {name,type,mode,path,mac} (default)")
    out.add_argument("--dpdk-args", action="store_true", help="print one '--vdev ...' DPDK EAL argument per line")
    p.add_argument(
        "--split-rings",
        action="store_true",
        help="with --dpdk-args: leave out packed_vq=1 (virtio_user then uses split virtqueues, as DPDK does by default)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait until interfaces are found and usable: client-mode sockets exist, server-mode folders exist",
    )
    p.add_argument("--root", type=Path, default=Path("/"), help="read the standard paths under this folder")
    p.add_argument("--network-info", type=Path, help="KubeVirt network-info file (default /etc/podinfo/network-info)")
    p.add_argument(
        "--annotations", type=Path, help="downward API annotations file (default /etc/podnetinfo/annotations)"
    )
    p.add_argument("--network-status", metavar="FILE|-|JSON", help="a Multus network-status JSON array")
    p.add_argument(
        "--socket-dir",
        type=Path,
        action="append",
        help="folder of kuryr-style config files (repeatable; default /var/run/vhostuser and /var/run/vhostplug/*/)",
    )
    p.add_argument(
        "--container-id",
        action="append",
        help="container ID naming kuryr config files (repeatable; default: found in /proc/self/mountinfo, cgroup)",
    )
    p.add_argument("--interface", action="append", metavar="NAME", help="only these interfaces (repeatable)")
    p.add_argument("--interval", type=float, default=0.2, help=argparse.SUPPRESS)
    return p


def _places(args: argparse.Namespace) -> Places:
    return Places(
        root=args.root,
        network_info=args.network_info,
        annotations=args.annotations,
        network_status=args.network_status,
        socket_dirs=tuple(args.socket_dir) if args.socket_dir else None,
        container_ids=tuple(args.container_id) if args.container_id else None,
    )


def _select(found: Findings, names: list[str] | None) -> Findings:
    if names:
        found.interfaces = [i for i in found.interfaces if i.name in names]
    return found


def collect(
    args: argparse.Namespace, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
) -> tuple[Findings, list[str]]:
    """Find interfaces, waiting up to ``args.wait`` seconds; returns the findings and what is still not ready."""
    deadline = clock() + max(args.wait, 0.0)
    root = str(args.root)
    while True:
        found = _select(find(_places(args)), args.interface)
        waiting = [w for i in found.interfaces if (w := not_ready(i, root))] if args.wait > 0 else []
        if (found.interfaces and not waiting) or clock() >= deadline:
            return found, waiting
        sleep(min(args.interval, max(deadline - clock(), 0.01)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    found, waiting = collect(args)
    for problem in found.problems:
        print(f"podinfo: warning: {problem}", file=sys.stderr)
    if not found.interfaces:
        what = f"interfaces {', '.join(args.interface)}" if args.interface else "vhost-user or vdpa interfaces"
        waited = f" after waiting {args.wait:g}s" if args.wait > 0 else ""
        print(f"podinfo: error: no {what} found{waited}; looked in:", file=sys.stderr)
        for place in found.looked:
            print(f"  - {place}", file=sys.stderr)
        return 1
    if waiting:
        print(f"podinfo: error: timed out after {args.wait:g}s waiting for:", file=sys.stderr)
        for line in waiting:
            print(f"  - {line}", file=sys.stderr)
        return 1
    if args.dpdk_args:
        vdevs, notes = dpdk_vdevs(found.interfaces, args.split_rings)
        for note in notes:
            print(f"podinfo: note: {note}", file=sys.stderr)
        if not vdevs:
            print("podinfo: error: no interface usable by DPDK", file=sys.stderr)
            return 1
        for vdev in vdevs:
            print(f"--vdev {vdev}")
        return 0
    print(json.dumps([i.to_json() for i in found.interfaces], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
