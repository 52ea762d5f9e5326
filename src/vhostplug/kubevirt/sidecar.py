"""The KubeVirt vhostuser network binding sidecar: the hooks gRPC server (Info, v1alpha2 and v1alpha3 Callbacks).

Owns: reading the downward-API network-info file (waiting while it is still empty), making the stable links, calling
the pure rewrite in :mod:`vhostplug.kubevirt.domain`, turning failures into gRPC errors a VM owner can act on, and
removing its links on Shutdown. The server answers Info at once and keeps serving after any failed call.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from vhostplug.kubevirt import domain, links
from vhostplug.kubevirt.hooks import (
    info_pb2,
    info_pb2_grpc,
    v1alpha2_pb2,
    v1alpha2_pb2_grpc,
    v1alpha3_pb2,
    v1alpha3_pb2_grpc,
)
from vhostplug.model import MAX_SOCKET_PATH
from vhostplug.podinfo import devicemetadata

log = logging.getLogger("vhostplug.kubevirt.sidecar")

SIDECAR_NAME = "vhostuser-network-binding"
HOOKS_DIR = Path("/var/run/kubevirt-hooks")
DEFAULT_NETWORK_INFO = Path("/etc/podinfo/network-info")
VERSIONS = ("v1alpha3", "v1alpha2")
HOOK_POINTS = ("OnDefineDomain", "Shutdown")


def default_socket_path(hooks_dir: Path = HOOKS_DIR) -> Path:
    """``<hooks_dir>/<CONTAINER_NAME or vhostuser-<pid>>.sock``."""
    unique = os.environ.get("CONTAINER_NAME") or f"vhostuser-{os.getpid()}"
    return Path(hooks_dir) / f"{unique}.sock"


@dataclass(frozen=True)
class Device:
    """The vhost-user device of one VMI network, from network-info."""

    network: str
    path: str
    mode: str
    mtu: int | None = None
    #: the path is the same in every virt-launcher of this VMI already (a DRA claim's: built from the pod's claim
    #: and request names), so QEMU takes it as it is, with no link
    stable: bool = False


def read_network_info(path: Path) -> dict[str, Device]:
    """Parse the downward-API network-info file; a missing or empty file means "nothing yet" (empty dict).

    Raises :class:`domain.BindingError` only for a file that has content but is not the documented JSON.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise domain.BindingError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("interfaces", []), list):
        raise domain.BindingError(f"{path} must be an object with an 'interfaces' list")
    found: dict[str, Device] = {}
    for entry in obj.get("interfaces") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("network"), str):
            continue
        info = entry.get("deviceInfo")
        vu = info.get("vhost-user") if isinstance(info, dict) else None
        if not isinstance(vu, dict) or not isinstance(vu.get("path"), str) or not vu["path"]:
            continue
        mode = vu.get("mode", "server")
        if mode not in ("server", "client"):
            raise domain.BindingError(f"{path}: network {entry['network']} has vhost-user mode {mode!r}")
        found[entry["network"]] = Device(entry["network"], vu["path"], mode)
    return found


@dataclass
class Binding:
    """What OnDefineDomain and Shutdown do, without gRPC (tests drive it directly too)."""

    network_info: Path = DEFAULT_NETWORK_INFO
    links_dir: Path = links.DEFAULT_LINKS_DIR
    #: where kubelet puts DRA device metadata in this container (KEP-5304), and the driver whose devices we bind
    dra_metadata_dir: Path = Path(devicemetadata.CONTAINER_ROOT)
    dra_driver: str = devicemetadata.VHOSTPLUG_DRIVER
    options: domain.Options = field(default_factory=domain.Options)
    wait_timeout: float = 30.0
    poll_interval: float = 0.2
    made: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _claim_path(self, ref: domain.ClaimRef) -> Path:
        """The claim's metadata file: a claim the pod names directly is found by its own name, one made from a
        template by the pod's name for it (KEP-5304)."""
        return self.dra_metadata_dir / devicemetadata.relative_path(
            self.dra_driver,
            ref.resource_claim_name or ref.claim_name,
            ref.request_name,
            from_template=ref.resource_claim_name is None,
        )

    def _claim_device(self, network: str, ref: domain.ClaimRef) -> Device | None:
        """The network's device from its claim's DRA device metadata; None while the file is missing or empty."""
        path = self._claim_path(ref)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise domain.BindingError(f"network {network}: cannot read DRA device metadata {path}: {exc}") from exc
        try:
            meta = devicemetadata.decode(text, str(path))
            if meta is None:
                return None
            vu = devicemetadata.vhost_user(meta, ref.request_name, self.dra_driver, str(path))
        except devicemetadata.MetadataError as exc:
            raise domain.BindingError(f"network {network}: {exc}") from exc
        return Device(network, vu.path, vu.mode, vu.mtu, stable=True)

    def _devices(self, networks: list[str], claims: dict[str, domain.ClaimRef]) -> dict[str, Device]:
        """Each network's device: from DRA device metadata for a network that is a resourceClaim, else from the
        downward API's network-info; waits (up to ``wait_timeout``) while either is not written yet."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            from_info = [n for n in networks if n not in claims]
            devices = read_network_info(self.network_info) if from_info else {}
            for net in networks:
                if net in claims:
                    dev = self._claim_device(net, claims[net])
                    if dev is not None:
                        devices[net] = dev
            missing = [n for n in networks if n not in devices]
            if not missing:
                return devices
            if time.monotonic() >= deadline:
                raise domain.BindingError(self._missing_message(missing, claims), precondition=True)
            time.sleep(self.poll_interval)

    def _missing_message(self, missing: list[str], claims: dict[str, domain.ClaimRef]) -> str:
        parts = []
        info = [n for n in missing if n not in claims]
        if info:
            parts.append(
                f"no vhost-user device for network(s) {', '.join(info)} in {self.network_info} after "
                f"{self.wait_timeout:.0f}s: check that each network's NetworkAttachmentDefinition carries "
                "k8s.v1.cni.cncf.io/resourceName and that the KubeVirt binding registers downwardAPI: device-info"
            )
        for n in missing:
            if n in claims:
                ref = claims[n]
                parts.append(
                    f"network {n}: no DRA device metadata at {self._claim_path(ref)} after "
                    f"{self.wait_timeout:.0f}s: check that claim {ref.claim_name} request {ref.request_name} is "
                    f"allocated a device of {self.dra_driver} and that the compute container lists the claim"
                )
        return "; ".join(parts)

    def on_define_domain(self, domain_xml: bytes, vmi_json: bytes) -> bytes:
        vmi = domain.parse_vmi(vmi_json)
        bound = vmi.bound(self.options.binding_name)
        if not bound:
            return domain.rewrite(domain_xml, vmi, {}, self.options)
        devices = self._devices([i.name for i in bound], dict(vmi.claims))
        sockets: dict[str, domain.Socket] = {}
        with self.lock:
            for iface in bound:
                dev = devices[iface.name]
                real_dir, _, sock_name = dev.path.rpartition("/")
                if not real_dir or not sock_name:
                    raise domain.BindingError(f"network {iface.name}: device path {dev.path!r} is not absolute")
                if len(dev.path.encode()) > MAX_SOCKET_PATH:
                    raise domain.BindingError(
                        f"network {iface.name}: device socket path {dev.path!r} is {len(dev.path.encode())} bytes; "
                        f"the limit for a unix socket path is {MAX_SOCKET_PATH}"
                    )
                if dev.stable:
                    sockets[iface.name] = domain.Socket(dev.path, dev.mode, dev.mtu)
                    continue
                try:
                    stable = links.stable_socket_path(self.links_dir, iface.name, sock_name)
                    links.ensure_link(self.links_dir, iface.name, real_dir)
                except links.LinkError as exc:
                    raise domain.BindingError(f"network {iface.name}: {exc}") from exc
                self.made.add(iface.name)
                sockets[iface.name] = domain.Socket(stable, dev.mode, dev.mtu)
        return domain.rewrite(domain_xml, vmi, sockets, self.options)

    def shutdown(self) -> list[str]:
        with self.lock:
            removed = [name for name in sorted(self.made) if links.remove_link(self.links_dir, name)]
            self.made.clear()
        return removed


def _guard(context: Any, call: str, fn: Callable[[], bytes]) -> bytes:
    started = time.monotonic()
    try:
        out = fn()
    except domain.BindingError as exc:
        code = grpc.StatusCode.FAILED_PRECONDITION if exc.precondition else grpc.StatusCode.INVALID_ARGUMENT
        log.warning("%s failed (%s): %s", call, code.name, exc)
        context.abort(code, f"vhostuser network binding: {exc}")
        raise  # not reached: abort raises
    except Exception as exc:
        log.exception("%s failed unexpectedly", call)
        context.abort(grpc.StatusCode.INTERNAL, f"vhostuser network binding: internal error: {exc}")
        raise
    log.info("%s done in %.1f ms", call, (time.monotonic() - started) * 1000)
    return out


class InfoServicer(info_pb2_grpc.InfoServicer):
    def Info(self, request: Any, context: Any) -> Any:
        return info_pb2.InfoResult(
            name=SIDECAR_NAME,
            versions=list(VERSIONS),
            hookPoints=[info_pb2.HookPoint(name=n, priority=0) for n in HOOK_POINTS],
        )


class CallbacksV1alpha2(v1alpha2_pb2_grpc.CallbacksServicer):
    def __init__(self, binding: Binding) -> None:
        self.binding = binding

    def OnDefineDomain(self, request: Any, context: Any) -> Any:
        xml = _guard(context, "OnDefineDomain", lambda: self.binding.on_define_domain(request.domainXML, request.vmi))
        return v1alpha2_pb2.OnDefineDomainResult(domainXML=xml)

    def PreCloudInitIso(self, request: Any, context: Any) -> Any:
        return v1alpha2_pb2.PreCloudInitIsoResult(
            cloudInitNoCloudSource=request.cloudInitNoCloudSource, cloudInitData=request.cloudInitData
        )


class CallbacksV1alpha3(v1alpha3_pb2_grpc.CallbacksServicer):
    def __init__(self, binding: Binding, on_shutdown: Callable[[], None] | None = None) -> None:
        self.binding = binding
        self.on_shutdown = on_shutdown

    def OnDefineDomain(self, request: Any, context: Any) -> Any:
        xml = _guard(context, "OnDefineDomain", lambda: self.binding.on_define_domain(request.domainXML, request.vmi))
        return v1alpha3_pb2.OnDefineDomainResult(domainXML=xml)

    def PreCloudInitIso(self, request: Any, context: Any) -> Any:
        return v1alpha3_pb2.PreCloudInitIsoResult(
            cloudInitNoCloudSource=request.cloudInitNoCloudSource, cloudInitData=request.cloudInitData
        )

    def Shutdown(self, request: Any, context: Any) -> Any:
        removed = self.binding.shutdown()
        log.info("Shutdown: removed links %s", removed)
        if self.on_shutdown is not None:
            self.on_shutdown()
        return v1alpha3_pb2.ShutdownResult()


class Sidecar:
    """The gRPC server on a unix socket; ``run`` blocks until SIGTERM/SIGINT or (with exit_on_shutdown) Shutdown."""

    def __init__(self, socket_path: Path, binding: Binding, exit_on_shutdown: bool = True) -> None:
        self.socket_path = Path(socket_path)
        self.binding = binding
        self.exit_on_shutdown = exit_on_shutdown
        self.stopping = threading.Event()
        self.server: Any = None

    def start(self) -> None:
        if len(str(self.socket_path).encode()) > MAX_SOCKET_PATH:
            raise ValueError(f"hooks socket path {self.socket_path} is longer than {MAX_SOCKET_PATH} bytes")
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.is_socket() or self.socket_path.is_symlink():
            self.socket_path.unlink()  # a stale socket from an earlier run makes bind fail
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        info_grpc: Any = info_pb2_grpc  # generated code is untyped
        v2_grpc: Any = v1alpha2_pb2_grpc
        v3_grpc: Any = v1alpha3_pb2_grpc
        info_grpc.add_InfoServicer_to_server(InfoServicer(), server)
        v2_grpc.add_CallbacksServicer_to_server(CallbacksV1alpha2(self.binding), server)
        on_shutdown = self.stopping.set if self.exit_on_shutdown else None
        v3_grpc.add_CallbacksServicer_to_server(CallbacksV1alpha3(self.binding, on_shutdown), server)
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        self.server = server
        log.info("listening on %s (binding %s)", self.socket_path, self.binding.options.binding_name)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=1.0).wait()
            self.server = None
        if self.socket_path.is_socket():
            self.socket_path.unlink()

    def run(self) -> None:
        self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:  # stop's grace lets a Shutdown call's reply leave before the server goes
            self.stop()
