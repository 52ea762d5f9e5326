"""A real `vhostplug agent` process on a private OVS, the installed shim, and a runner that execs the shim exactly as
a container runtime does (environment + netconf on stdin). Used by the CNI and agent tests, the fuzz suite and the
benches (bench/churn.py, bench/vswitchd_restart.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug import deviceinfo
from vhostplug.cni.install import copy_ipam_plugins, install_shim
from vhostplug.cni.policy import DEFAULT_DEVICE_RESOURCE
from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.bridges import delete_bridge_if_ours

VHOSTPLUG = str(Path(sys.executable).with_name("vhostplug"))


@dataclass
class CniResult:
    code: int
    out: dict[str, Any]
    raw: str
    seconds: float


@dataclass
class ShimRun:
    code: int
    stdout: bytes
    stderr: bytes
    seconds: float

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.stdout) if self.stdout.strip() else {}
        return out


@dataclass
class AgentProc:
    root: Path
    ovs: PrivateOvs
    ovsdb: str
    socket: Path
    socket_root: Path
    cni_bin: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    dataplane: OvsDataplane | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        cfg = {
            "listen": str(self.socket),
            "socketRoot": str(self.socket_root),
            "dataplane": {"backend": "ovs", "ovsdb": self.ovsdb, "ovsRundir": str(self.ovs.run_dir)},
            "relocateSeconds": 0.2,
            "stateDir": str(self.root / "state"),
            # node policy: the bridges these tests' networks use, the devinfo root their device-info files go to
            "devinfoDir": str(self.devinfo_root),
            "bridges": {"allowed": ["br-cni", "br-vhost"]},
            **self.extra,
        }
        self.config.write_text(json.dumps(cfg))
        if self.socket.is_socket():  # a killed agent's socket: wait for the new one, not for this
            self.socket.unlink()
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([VHOSTPLUG, "agent", "--config", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 60  # a loaded 2-core CI host imports the agent slowly
        while not self.socket.is_socket():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("agent did not start:\n" + self.log.read_text()[-3000:])
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)
        self.proc = None

    @property
    def devinfo_root(self) -> Path:
        return self.root / "devinfo"

    def allocate(self, device_id: str) -> Path:
        """What the device plugin's Allocate leaves for a device: its folder (unless something is already there) and
        its dp device-info file, the mark by which the agent knows the device is one of its device plugin's."""
        folder = self.socket_root / device_id
        self.socket_root.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(folder):
            folder.mkdir()
        deviceinfo.write_dp(
            self.devinfo_root,
            DEFAULT_DEVICE_RESOURCE,
            device_id,
            deviceinfo.vhost_user("server", f"/var/run/vhostplug/{device_id}/vhu.sock"),
        )
        return folder

    def netconf(self, allocate: bool = True, **kw: Any) -> dict[str, Any]:
        """A netconf for this agent; a deviceID in it is allocated first, as kubelet would have (unless told not to)."""
        for device_id in (kw.get("deviceID"), (kw.get("runtimeConfig") or {}).get("deviceID")):
            if allocate and isinstance(device_id, str) and "/" not in device_id and device_id not in (".", ".."):
                self.allocate(device_id)
        conf: dict[str, Any] = {
            "cniVersion": "1.1.0",
            "name": "vhnet",
            "type": "vhostplug",
            "agentSocket": str(self.socket),
            "socketRoot": str(self.socket_root),
            "bridge": "br-cni",
        }
        conf.update(kw)
        return conf

    def run(
        self,
        command: str,
        conf: dict[str, Any] | str,
        container_id: str = "",
        ifname: str = "net1",
        netns: str = "/var/run/netns/test",
        args: str = "",
        timeout: float = 60,
    ) -> CniResult:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_IFNAME": ifname,
            "CNI_NETNS": netns,
            "CNI_PATH": str(self.cni_bin.parent),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        if args:
            env["CNI_ARGS"] = args
        stdin = conf if isinstance(conf, str) else json.dumps(conf)
        t0 = time.perf_counter()
        proc = subprocess.run([str(self.cni_bin)], input=stdin.encode(), env=env, capture_output=True, timeout=timeout)
        seconds = time.perf_counter() - t0
        raw = proc.stdout.decode()
        try:
            out = json.loads(raw) if raw.strip() else {}
        except ValueError:
            out = {"unparsed": raw, "stderr": proc.stderr.decode()}
        return CniResult(proc.returncode, out, raw, seconds)

    def exec_shim(self, env: dict[str, str] | dict[bytes, bytes], stdin: bytes, timeout: float = 60) -> ShimRun:
        """Exec the shim with exactly ``env`` (bytes allowed: runtimes pass any bytes) and ``stdin``."""
        t0 = time.perf_counter()
        proc = subprocess.run([str(self.cni_bin)], input=stdin, env=env, capture_output=True, timeout=timeout)
        return ShimRun(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)

    def cni_env(self, command: str, container_id: str = "", ifname: str = "net1", **more: str) -> dict[str, str]:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_IFNAME": ifname,
            "CNI_NETNS": "/var/run/netns/test",
            "CNI_PATH": str(self.cni_bin.parent),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        env.update(more)
        return env

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def leftovers(self) -> list[str]:
        """Files under the socket root and our OVS ports: empty when nothing is left behind."""
        files = [str(p) for p in self.socket_root.rglob("*")] if self.socket_root.exists() else []
        return files + self.our_ports()

    def our_ports(self) -> list[str]:
        assert self.dataplane is not None
        return sorted(p.name for p in self.dataplane.list_ports())


def make_agent(ovs: PrivateOvs, ovsdb: str | None = None, **extra: Any) -> AgentProc:
    root = Path(tempfile.mkdtemp(prefix="vhp-cni-", dir="/tmp"))
    bin_dir = root / "bin"
    cni_bin = install_shim(bin_dir)
    copy_ipam_plugins(bin_dir)
    agent = AgentProc(
        root=root,
        ovs=ovs,
        ovsdb=ovsdb or ovs.endpoint,
        socket=root / "agent.sock",
        socket_root=root / "s",
        cni_bin=cni_bin,
        config=root / "agent.json",
        log=root / "agent.log",
        extra=extra,
    )
    agent.dataplane = OvsDataplane(ovs.endpoint, ovs_rundir=ovs.run_dir)
    agent.start()
    return agent


def stop_agent(a: AgentProc, bridges: tuple[str, ...] = ("br-cni",)) -> None:
    """Stop the agent, remove every port it left and the bridges it made, close the dataplane, remove its folder."""
    a.stop()
    assert a.dataplane is not None
    for port in a.dataplane.list_ports():
        a.dataplane.detach(port.name)
    for bridge in bridges:
        delete_bridge_if_ours(a.dataplane.endpoint, bridge)
    a.dataplane.close()
    shutil.rmtree(a.root, ignore_errors=True)
