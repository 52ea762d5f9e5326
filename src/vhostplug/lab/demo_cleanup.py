"""Undo what a demo made in a run folder, from its state file alone (also after a crash or a kill): testpmd
processes and their DPDK folders, VMs and the libvirt daemons the demo started, sidecars, CNI attachments (DEL through
the shim, as a runtime does), pods and the host mount points made for them. Called by ``vhostplug lab down``."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from vhostplug.lab.demo_state import State
from vhostplug.lab.multus import CniCall, exec_cni
from vhostplug.lab.paths import LabPaths
from vhostplug.lab.pods import LabPod, ProcRef, pids_with_arg

DPDK_RUN = Path("/var/run/dpdk")


def cleanup(run_dir: Path) -> list[str]:
    """Undo what a demo made in ``run_dir`` (also after a crash): testpmd, VMs, sidecars, CNI attachments, pods."""
    from vhostplug.lab import pods

    state_path = Path(run_dir) / "demo" / "state.json"
    if not state_path.exists():
        return []
    st = State(Path(run_dir)).data
    done: list[str] = []
    for prefix in st["testpmd_prefixes"]:
        for pid in pids_with_arg(f"--file-prefix={prefix}"):
            if ProcRef.of(pid).kill():
                done.append(f"stopped testpmd {prefix} (pid {pid})")
        if (DPDK_RUN / prefix).exists():
            shutil.rmtree(DPDK_RUN / prefix, ignore_errors=True)
            done.append(f"removed {DPDK_RUN / prefix}")
    done += _cleanup_domains(st["domains"], st["libvirt_started"])
    for sc in st["sidecars"]:
        if ProcRef(sc["pid"], sc["start"]).kill():
            done.append(f"stopped sidecar (pid {sc['pid']})")
    for m in reversed(st.get("host_mounts", [])):  # a DRA VM's socket folder at its container path on the host
        if subprocess.run(["umount", "-l", m["path"]], capture_output=True, check=False).returncode == 0:
            done.append(f"unmounted {m['path']}")
        for d in reversed(m["made"]):
            with contextlib.suppress(OSError):
                os.rmdir(d)
                done.append(f"removed {d}")
    paths = LabPaths(Path(run_dir))
    for data in reversed(st["attachments"]):
        att = CniCall(**data)
        if paths.agent_socket.is_socket():
            try:
                exec_cni(paths.cni_bin, paths.cni_bin_dir, att, "DEL")
                done.append(f"CNI DEL {att.kind} {att.name} ({att.device})")
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                done.append(f"CNI DEL {att.kind} {att.name} failed: {exc}")
        # Multus removes the device-info file it made for the attachment (the machine's folder: only this one)
        made = Path(att.netconf.get("runtimeConfig", {}).get("CNIDeviceInfoFile", ""))
        if made.parent == paths.devinfo_dir / "cni" and att.container_id in made.name:
            with contextlib.suppress(FileNotFoundError):
                made.unlink()
                done.append(f"removed {made}")
    for p in reversed(st["pods"]):
        if p.get("holder"):
            done += pods.delete_pod(LabPod.from_json(p))
        elif (pods.NETNS_DIR / p["netns"]).exists():
            subprocess.run(["ip", "netns", "del", p["netns"]], capture_output=True, check=False)
            done.append(f"deleted netns {p['netns']}")
    for parts in st.get("vdpa_parts", []):
        from vhostplug.lab.vdpa_parts import remove

        done += remove(Path(parts["root"]), parts["switch_netns"], parts["representors"])
    in_use = mount_points_in_use()
    for d in reversed(st["host_dirs"]):
        if d in in_use:  # another lab's pods have their tmpfs there: removing it would detach their mounts
            done.append(f"kept {d} (a mount point of another lab's pods)")
            continue
        with contextlib.suppress(OSError):
            os.rmdir(d)
            done.append(f"removed {d}")
    state_path.unlink(missing_ok=True)
    return done


def mount_points_in_use() -> set[str]:
    """Every mount point of every mount namespace on the machine (the host folders lab pods mount tmpfs on are
    shared by all labs on it)."""
    seen_ns: set[str] = set()
    points: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ns = os.readlink(proc / "ns" / "mnt")
            if ns in seen_ns:
                continue
            seen_ns.add(ns)
            lines = (proc / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        points.update(line.split()[4] for line in lines if len(line.split()) > 4)
    return points


def _cleanup_domains(domains: list[str], started: list[str]) -> list[str]:
    if not domains and not started:
        return []
    from vhostplug.lab.vms import LabVmError, Libvirt

    lv = Libvirt()
    done = []
    try:
        if domains:
            lv.start()
        listed = lv.virsh("list", "--all", "--name", check=False).split() if domains else []
        for name in domains:
            if name in listed:
                lv.remove(name)
                done.append(f"removed domain {name}")
    except (LabVmError, OSError, subprocess.SubprocessError) as exc:
        done.append(f"cannot remove domains {domains}: {exc}")
    lv.started = sorted(set(lv.started) | set(started))
    done += lv.stop()
    return done
