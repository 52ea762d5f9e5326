"""A lab virt-launcher pod for a migration, on one lab node, made as kubelet, Multus and KubeVirt make it: a sandbox
netns, the device from that node's device plugin (the lab kubelet's ``Allocate``), the CNI ADD through that node's
installed shim and agent, and its QEMU in a mount namespace of its own where the stable socket path
``<links>/<iface>/<socket>`` (what the hook sidecar writes into the domain) leads to the pod's own device folder.

``delete`` is the pod going away: QEMU quits, the CNI DEL runs through the same node's shim, kubelet frees the
device, the netns and Multus's device-info copy are removed, and the node's demo state forgets the attachment.
Owns :class:`NodeQemu` (a :class:`~.qemu.LabQemu` bound to an agent-made device folder, QMP events kept with their
QEMU timestamps) and :class:`LaunchedPod`.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhostplug.lab.demo_context import DemoContext
from vhostplug.lab.migration import MigrationError
from vhostplug.lab.migration.qemu import LabQemu
from vhostplug.lab.migration.qmp import Qmp
from vhostplug.lab.multus import IFNAME, CniCall, exec_cni, host_socket, multus_devinfo, netconf

VM_NAD = "vhostplug-vms"


class EventQmp(Qmp):
    """A :class:`Qmp` that keeps the events it skips: ``(event name, QEMU's wall-clock timestamp, data)``."""

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.events: list[tuple[str, float, dict[str, Any]]] = []
        super().__init__(path, timeout)

    def _recv(self) -> dict[str, Any]:
        msg = super()._recv()
        if "event" in msg:
            ts = msg.get("timestamp", {})
            self.events.append((str(msg["event"]), ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6, msg))
        return msg


@dataclass
class NodeQemu(LabQemu):
    """A lab QEMU whose vhost-user server socket is the one its node's agent expects (``socket``)."""

    socket: Path = Path()
    #: QMP events kept past :meth:`stop`
    kept_events: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    #: False: ``guest_announce=off`` on the virtio-net device, so QEMU announces the VM itself after a migration
    #: (a RARP the vhost-user backend sends at once) instead of asking the guest's driver (a TCG guest is slow)
    guest_announce: bool = True

    @property
    def device_dir(self) -> Path:
        return self.socket.parent

    @property
    def real_socket(self) -> Path:
        return self.socket

    @property
    def stable_socket(self) -> str:
        return f"{self.links_dir}/{self.iface}/{self.socket.name}"

    def start(self, timeout: float = 20.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        super().start(timeout)

    def connect_qmp(self, timeout: float = 30.0) -> None:
        try:
            self.qmp = EventQmp(self.qmp_socket, timeout=timeout)
        except (OSError, MigrationError) as exc:
            raise MigrationError(f"QEMU {self.name}: no QMP ({exc}); log:\n{self.log_tail()}") from exc

    def qemu_argv(self) -> list[str]:
        argv = super().qemu_argv()
        if not self.guest_announce:
            argv = [a + ",guest_announce=off" if a.startswith("virtio-net-pci,") else a for a in argv]
        return argv

    def stop(self, timeout: float = 10.0) -> None:
        if isinstance(self.qmp, EventQmp):
            self.kept_events = list(self.qmp.events)
        super().stop(timeout)

    def events(self) -> list[tuple[str, float, dict[str, Any]]]:
        return list(self.qmp.events) if isinstance(self.qmp, EventQmp) else self.kept_events


@dataclass
class LaunchedPod:
    """One pod on ``ctx``'s node with a vhost-user attachment on the node's VM bridge."""

    ctx: DemoContext
    name: str
    subnet: str
    ip_range: tuple[str, str] | None = None
    #: the interface MAC the CNI ADD asks for (``runtimeConfig.mac``, Multus's ``mac`` capability); "" lets it choose
    mac_request: str = ""
    call: CniCall | None = None
    netns: str = ""
    made: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return self.ctx.run_dir.name

    @property
    def socket(self) -> Path:
        if self.call is None:
            raise MigrationError(f"pod {self.name} has no attachment")
        return host_socket(self.call)

    @property
    def port(self) -> str:
        from vhostplug.model import port_name_for

        if self.call is None:
            raise MigrationError(f"pod {self.name} has no attachment")
        return port_name_for(self.call.container_id, IFNAME)

    @property
    def mac(self) -> str:
        iface = next(i for i in self.result.get("interfaces", []) if i.get("sandbox"))
        return str(iface["mac"])

    @property
    def ip(self) -> str:
        return str(self.result["ips"][0]["address"])

    @property
    def result(self) -> dict[str, Any]:
        return self.call.result if self.call is not None else {}

    def create(self) -> LaunchedPod:
        """Sandbox, device Allocate on this node, Multus's device-info copy, CNI ADD through this node's shim."""
        from vhostplug.lab import pods

        ctx = self.ctx
        with ctx.progress.phase(f"{self.node}: pod {self.name} (device, CNI ADD)", [ctx.paths.agent_log]) as ph:
            self.netns = ctx.names.netns(self.name)
            ph.doing(f"ip netns add {self.netns}")
            ctx.state.add("pods", {"name": self.name, "netns": self.netns, "holder": None})
            pods.run(["ip", "netns", "add", self.netns], f"sandbox of {self.name}")
            device, _resp = ctx.allocate(ph, self.name)
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            devinfo = multus_devinfo(ctx.paths, VM_NAD, cid, device)
            conf = netconf(VM_NAD, ctx.paths, ctx.names.bridge("v"), device, devinfo, self.subnet)
            if self.ip_range:  # this node's own part of the subnet
                conf["ipam"]["rangeStart"], conf["ipam"]["rangeEnd"] = self.ip_range
            if self.mac_request:
                conf["capabilities"]["mac"] = True
                conf["runtimeConfig"]["mac"] = self.mac_request
            call = CniCall("vm", self.name, str(uuid.uuid4()), cid, str(pods.NETNS_DIR / self.netns), device, conf)
            self.call = call
            ctx.attach(ph, call)
        return self

    def delete(self) -> list[str]:
        """CNI DEL through this node's shim, device freed, netns and device-info copy removed; never raises."""
        from vhostplug.lab.multus import NAMESPACE

        done: list[str] = []
        ctx, call = self.ctx, self.call
        if call is not None:
            try:
                exec_cni(ctx.paths.cni_bin, ctx.paths.cni_bin_dir, call, "DEL")
                done.append(f"{self.node}: CNI DEL {self.name} ({call.device})")
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                done.append(f"{self.node}: CNI DEL {self.name} failed: {exc}")
            with contextlib.suppress(OSError):
                Path(call.netconf["runtimeConfig"]["CNIDeviceInfoFile"]).unlink()
            if ctx.kubelet is not None:
                ctx.kubelet.release_pod(NAMESPACE, self.name)
            ctx.calls.pop(self.name, None)
            atts = ctx.state.data["attachments"]
            ctx.state.data["attachments"] = [a for a in atts if a["container_id"] != call.container_id]
            self.call = None
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
            ctx.state.data["pods"] = [p for p in ctx.state.data["pods"] if p["netns"] != self.netns]
            self.netns = ""
        ctx.state.save()
        return done


def wait_port_gone(ctx: DemoContext, port: str, timeout: float = 10.0) -> None:
    """The CNI DEL removed the port from the node's OVSDB."""
    from vhostplug.dataplane import ovsdb_rpc

    deadline = time.monotonic() + timeout
    while ovsdb_rpc.select(ctx.ovs_endpoint, "Port", columns=["name"], where=[["name", "==", port]]):
        if time.monotonic() > deadline:
            raise MigrationError(f"{ctx.run_dir.name}: port {port} still in OVSDB {timeout:.0f}s after DEL")
        time.sleep(0.05)
