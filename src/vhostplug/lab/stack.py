"""The lab's long-running parts, started and stopped by `vhostplug lab up/status/down`: the private OVS-DPDK, the
node agent (CNI server + device plugin) as a background process, and the installed CNI shim.

Everything lives under one run folder; `down` works from that folder alone, so it also cleans up after a crash.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from vhostplug.cni.install import copy_ipam_plugins, install_shim
from vhostplug.lab import apiserverd, daemon
from vhostplug.lab.demo_cleanup import cleanup as demo_cleanup
from vhostplug.lab.demo_state import Names
from vhostplug.lab.multus import RESOURCE
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.paths import LabPaths

#: "off": the lab's agents keep a port's MAC when its link changes (``dataplane.forgetMacOnLinkChange: false``)
FORGET_MAC_ENV = "VHOSTPLUG_LAB_FORGET_MAC"


class LabError(RuntimeError):
    pass


def _qemu_group() -> str:
    """The group QEMU (libvirt-qemu) shares with OVS for socket folders, when it exists."""
    for name in ("kvm", "libvirt-qemu"):
        with contextlib.suppress(KeyError):
            grp.getgrnam(name)
            return name
    return "root"


def lab_bridges(paths: LabPaths) -> list[str]:
    """The bridges the lab's networks use: the only ones its agent's node policy allows."""
    names = Names.of(paths.run_dir)
    return [names.bridge(kind) for kind in ("p", "v", "d")]  # pods, VMs, vDPA pods


def device_id_prefix(paths: LabPaths) -> str:
    """The lab's vhost-user device IDs start with this: its device-info files share the machine's folder."""
    return f"vu{Names.of(paths.run_dir).tag}-"


def agent_config(paths: LabPaths, ovs: PrivateOvs, apiserver: str | None = None) -> dict[str, Any]:
    """The lab agent's configuration; with ``apiserver`` (the stand-in's URL) also the DRA driver, its kubelet
    plugin folders and CDI folder under the run folder."""
    from vhostplug.lab.demo_vdpa import pool_config as vdpa_pool_config

    dra = {
        "enabled": True,
        "nodeName": paths.node_name,
        "apiServer": {"url": apiserver},
        "pluginsDir": str(paths.plugins_dir),
        "registryDir": str(paths.plugins_registry_dir),
        "cdiDir": str(paths.cdi_dir),
    }
    return {
        **({"dra": dra} if apiserver else {}),
        "listen": str(paths.agent_socket),
        "socketRoot": str(paths.socket_root),
        # node policy: the lab's VM network names the socket root as its container root (libvirtd runs on the host)
        "containerSocketRoots": [str(paths.socket_root)],
        "bridges": {"allowed": lab_bridges(paths)},
        "stateDir": str(paths.run_dir / "attachments"),
        "devicePluginDir": str(paths.device_plugin_dir),
        "devinfoDir": str(paths.devinfo_dir),
        "dataplane": {
            "backend": "ovs",
            "ovsdb": ovs.endpoint,
            "ovsRundir": str(ovs.run_dir),
            # the agent's default; off only for a comparison (bench/migration_downtime.py BENCH_FORGET=off)
            "forgetMacOnLinkChange": os.environ.get(FORGET_MAC_ENV, "on") != "off",
        },
        "ownership": {"user": "root", "group": _qemu_group(), "dirMode": "0770", "socketMode": "0660"},
        "devicePlugin": {
            "vhostuser": {"count": 8, "group": _qemu_group(), "idPrefix": device_id_prefix(paths)},
            "vdpa": vdpa_pool_config(paths),
        },
    }


def _agent_pid(paths: LabPaths) -> int | None:
    return daemon.pid_of(paths.agent_pidfile)


def start_agent(paths: LabPaths, ovs: PrivateOvs, timeout: float = 20.0, apiserver: str | None = None) -> int:
    if (pid := _agent_pid(paths)) is not None and paths.agent_socket.is_socket():
        return pid
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    paths.device_plugin_dir.mkdir(parents=True, exist_ok=True)
    paths.agent_config.write_text(json.dumps(agent_config(paths, ovs, apiserver), indent=2))
    exe = Path(sys.executable).with_name("vhostplug")
    argv = [str(exe), "agent", "--config", str(paths.agent_config)]
    try:
        return daemon.start(
            argv,
            paths.agent_log,
            paths.agent_pidfile,
            lambda: _agent_pid(paths) if paths.agent_socket.is_socket() else None,
            "the node agent",
            timeout,
            also=[paths.agent_socket],
        )
    except daemon.DaemonError as exc:
        raise LabError(str(exc)) from None


def stop_agent(paths: LabPaths) -> int | None:
    return daemon.stop(paths.agent_pidfile, [paths.agent_socket])


def lab_up(run_dir: Path, hugepages: bool | None = None) -> dict[str, Any]:
    """Start the lab. OVS-DPDK runs on 2 MB hugepages as a node's does (docs/deploy.md) when ``hugepages`` is true,
    or when it is None and the machine's pool has room for one more instance (``hugepages_fit``); else with
    ``--no-huge`` (the vhost-user path then costs OVS ~1.5x the CPU per packet: docs/benchmarks.md)."""
    from vhostplug.lab.ovs import OvsConfig, hugepages_fit

    paths = LabPaths(run_dir)
    ovs = PrivateOvs(paths.ovs_dir, OvsConfig(hugepages=hugepages_fit() if hugepages is None else hugepages))
    ovs.start()
    install_shim(paths.cni_bin_dir)
    copy_ipam_plugins(paths.cni_bin_dir)
    start_agent(paths, ovs, apiserver=apiserverd.start(paths))
    return lab_status(run_dir)


def lab_status(run_dir: Path) -> dict[str, Any]:
    paths = LabPaths(run_dir)
    status = PrivateOvs(paths.ovs_dir).status()
    status["run_dir"] = str(paths.run_dir)
    status.update(
        {
            "agent_socket": str(paths.agent_socket),
            "pid_agent": _agent_pid(paths),
            "cni_bin": str(paths.cni_bin),
            "cni_path": str(paths.cni_bin_dir),
            "socket_root": str(paths.socket_root),
            "device_plugin_dir": str(paths.device_plugin_dir),
            "devinfo_dir": str(paths.devinfo_dir),
            "bridges": lab_bridges(paths),
            "node_name": paths.node_name,
            "apiserver": apiserverd.url(paths),
            "cdi_dir": str(paths.cdi_dir),
            "dra_plugins_registry": str(paths.plugins_registry_dir),
        }
    )
    return status


def _remove_dp_files(paths: LabPaths) -> list[str]:
    """The device plugin removes its device-info files when it stops; after a crash, remove the ones this lab's
    device plugin wrote (its device ID prefix, its vDPA resource) from the machine's folder, and no other."""
    from vhostplug import deviceinfo
    from vhostplug.lab.demo_vdpa import vdpa_resource

    folder = deviceinfo.dp_dir(paths.devinfo_dir)
    ours = [
        f"{RESOURCE.replace('/', '-')}-{device_id_prefix(paths)}*-device.json",
        f"{vdpa_resource(paths.run_dir).replace('/', '-')}-*-device.json",
    ]
    done = []
    for pattern in ours:
        for f in sorted(folder.glob(pattern)):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                done.append(f"removed {f}")
    return done


def lab_down(run_dir: Path) -> list[str]:
    """Stop and remove everything the lab started (also after a crash); returns what it did."""
    paths = LabPaths(run_dir)
    done: list[str] = demo_cleanup(paths.run_dir)  # pods and VMs first, from the demo's state on disk
    if (pid := stop_agent(paths)) is not None:
        done.append(f"stopped agent (pid {pid})")
    if (pid := apiserverd.stop(paths)) is not None:
        done.append(f"stopped the stand-in kube-apiserver (pid {pid})")
    done += _remove_dp_files(paths)
    done.extend(PrivateOvs(paths.ovs_dir).stop())
    if paths.run_dir.exists():
        shutil.rmtree(paths.run_dir, ignore_errors=True)
        done.append(f"removed {paths.run_dir}")
    if not done:
        done.append("nothing to stop")
    return done
