#!/usr/bin/env python3
"""ovs-vswitchd restart with server-mode attachments (the app is the vhost-user server, OVS the client): how long
until every port is back (OVS reports the vhost-user connection up) and whether the apps noticed anything they should
not (same processes, same listening socket inodes, no re-ADD).

A private OVS-DPDK, the real agent and shim ADD ``RESTART_PORTS`` (default 4) server-mode ports; one dpdk-testpmd per
port serves its socket (virtio_user ``server=1``), as one app per pod would. Each of ``RESTART_ROUNDS`` (default 3)
rounds SIGTERMs ovs-vswitchd, starts it again and times (a) vswitchd ready (``dpdk_initialized``) -> all ports up
and (b) kill -> all ports up. Writes bench/results/vswitchd_restart.json (with the host's load average: the figure is
CPU-bound on a small host). Exits 1 only when an app was disturbed. Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vhostplug.dataplane import ovsdb_rpc
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.testpmd import Testpmd
from vhostplug.model import port_name_for
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent

PORTS = int(os.environ.get("RESTART_PORTS", "4"))
ROUNDS = int(os.environ.get("RESTART_ROUNDS", "3"))
OUT = Path(__file__).resolve().parent / "results" / "vswitchd_restart.json"


def connected(ovs: PrivateOvs, names: list[str]) -> dict[str, bool]:
    """Per port: OVS reports the vhost-user connection up (``link_state`` up or ``status:status=connected``)."""
    rows = ovsdb_rpc.select(ovs.endpoint, "Interface", [], ["name", "link_state", "status"])
    out = {}
    for r in rows:
        if r["name"] in names:
            status = ovsdb_rpc.ovs_map(r["status"])
            out[r["name"]] = r["link_state"] == "up" or "connected" in (
                status.get("status"),
                status.get("vhost-user-status"),
            )
    return out


def wait_all_up(ovs: PrivateOvs, names: list[str], timeout: float = 60.0) -> tuple[float, list[str]]:
    """Seconds until OVS reports every port in ``names`` connected (polled every 5 ms), and the ports still down
    when ``timeout`` ran out (then the seconds are ``timeout``)."""
    t0 = time.monotonic()
    while True:
        try:
            states = connected(ovs, names)
        except ovsdb_rpc.OvsdbRpcError:
            states = {}
        if len(states) == len(names) and all(states.values()):
            return time.monotonic() - t0, []
        if time.monotonic() - t0 > timeout:
            return timeout, sorted(n for n in names if not states.get(n))


def add_ports(agent: AgentProc) -> tuple[list[str], list[str]]:
    names: list[str] = []
    sockets: list[str] = []
    for i in range(PORTS):
        conf = json.dumps(agent.netconf(mode="server")).encode()
        r = agent.exec_shim(agent.cni_env("ADD", f"restart{i:03d}"), conf)
        if r.code != 0:
            raise RuntimeError(f"ADD failed: {r.stdout!r}")
        sockets.append(r.json()["interfaces"][0]["socketPath"])
        names.append(port_name_for(f"restart{i:03d}", "net1"))
    return names, sockets


def main() -> int:
    if os.geteuid() != 0:
        print("bench/vswitchd_restart.py needs root (private OVS-DPDK)", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-vsr-", dir="/tmp"))
    ovs = PrivateOvs(run_dir / "ovs")
    ovs.start()
    agent = None
    apps: list[Testpmd] = []
    try:
        agent = make_agent(ovs)
        names, sockets = add_ports(agent)
        for i, sock in enumerate(sockets):  # one app per pod, each the server of its own socket
            vdev = f"net_virtio_user0,path={sock},server=1,queue_size=256"
            apps.append(Testpmd([vdev], file_prefix=f"vsr{os.getpid()}x{i}", ring=256).start(timeout=60))
        first, down = wait_all_up(ovs, names)
        if down:
            raise RuntimeError(f"ports never connected before the restarts: {down}")
        app_pids = [a.pid for a in apps]
        inodes = {s: os.stat(s).st_ino for s in sockets}
        rounds: list[dict[str, Any]] = []
        for _ in range(ROUNDS):
            t_kill = time.monotonic()
            ovs.restart_vswitchd()  # SIGTERM, then start and wait for dpdk_initialized
            t_ready = time.monotonic()
            up, down = wait_all_up(ovs, names)
            rounds.append(
                {
                    "vswitchd_start_s": round(t_ready - t_kill, 3),
                    "ready_to_all_up_s": round(up, 3),
                    "kill_to_all_up_s": round(t_ready - t_kill + up, 3),
                    "not_back_after_60s": down,
                }
            )
            print(
                f"round {len(rounds)}: vswitchd ready -> {PORTS} ports up in {up:.3f} s "
                f"(kill -> up {t_ready - t_kill + up:.3f} s)" + (f"; NOT BACK after 60 s: {down}" if down else "")
            )
            if down:  # keep what ovs-vswitchd said about those ports' sockets, for whoever looks into it
                lost = [sockets[names.index(n)] for n in down if n in names]
                log = ovs.vswitchd_log.read_text(errors="replace").splitlines() if ovs.vswitchd_log.exists() else []
                rounds[-1]["vswitchd_log_for_ports_not_back"] = [
                    line for line in log if any(s in line for s in lost) or any(n in line for n in down)
                ][-40:]
                break  # a port that did not come back stays down: later rounds would measure nothing
        untouched = [a.pid for a in apps] == app_pids and all(
            a._proc is not None and a._proc.poll() is None for a in apps
        )
        same_sockets = all(os.stat(s).st_ino == ino for s, ino in inodes.items())
        worst = max(r["ready_to_all_up_s"] for r in rounds)
        results = {
            "ports": PORTS,
            "rounds": rounds,
            "first_connect_s": round(first, 3),
            "worst_ready_to_all_up_s": worst,
            "within_2s": worst <= 2.0,
            "all_back": not any(r["not_back_after_60s"] for r in rounds),
            "app_untouched": untouched and same_sockets,
            "host": {
                "cpus": os.cpu_count(),
                "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
                "note": "ovs-vswitchd PMD on core 1; testpmd lcores 0@0,1@0; OVS-DPDK without hugepages",
            },
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        print(f"worst vswitchd-ready -> all up: {worst:.3f} s; app untouched: {results['app_untouched']}; wrote {OUT}")
        if not results["all_back"]:
            print("FAILED: a server-mode port did not come back after an ovs-vswitchd restart")
        if not results["within_2s"]:
            print(f"NOT within 2 s on this host (1-minute load average {os.getloadavg()[0]:.1f})")
        return 0 if results["app_untouched"] else 1
    finally:
        for a in apps:
            a.stop()
        if agent is not None:
            stop_agent(agent)
        ovs.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"kept {run_dir}")


if __name__ == "__main__":
    sys.exit(main())
