"""kubelet's side of a DRA kubelet plugin, over the real gRPC protocol (no kubelet runs here): the plugin watcher's
handshake on a socket that appears in the registry folder (GetInfo, check the type and versions,
NotifyRegistrationStatus), then NodePrepareResources / NodeUnprepareResources on the endpoint the plugin named, with
the newest service version both sides know. Used by the lab's DRA step, the DRA tests and bench/dra_prepare.py; the
CDI device IDs a prepare returns are applied to a lab pod by :mod:`vhostplug.lab.cdiapply`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from vhostplug.dra.api.pluginregistration import api_pb2 as reg_pb
from vhostplug.dra.api.pluginregistration import api_pb2_grpc as reg_grpc
from vhostplug.dra.api.v1 import api_pb2 as v1_pb
from vhostplug.dra.api.v1 import api_pb2_grpc as v1_grpc
from vhostplug.dra.api.v1beta1 import api_pb2 as v1beta1_pb
from vhostplug.dra.api.v1beta1 import api_pb2_grpc as v1beta1_grpc

#: what kubelet 1.34+ speaks, newest first
KNOWN = {"v1.DRAPlugin": (v1_pb, v1_grpc), "v1beta1.DRAPlugin": (v1beta1_pb, v1beta1_grpc)}


@dataclass(frozen=True)
class Claim:
    namespace: str
    name: str
    uid: str


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_ctime_ns


def wait_for_socket(
    folder: Path, suffix: str = "-reg.sock", timeout: float = 60, skip: set[tuple[int, int]] | None = None
) -> Path:
    """The first socket in ``folder`` ending in ``suffix`` (kubelet's plugin watcher reacts to its creation); ``skip``:
    sockets already seen (inode and change time: inodes are reused) (a killed plugin's stale socket stays until the new one replaces it)."""
    deadline = time.monotonic() + timeout
    while True:
        if folder.is_dir():
            found = sorted(
                p
                for p in folder.iterdir()
                if p.name.endswith(suffix) and p.is_socket() and _identity(p) not in (skip or set())
            )
            if found:
                return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no registration socket *{suffix} appeared in {folder} within {timeout} s")
        time.sleep(0.02)


class DraKubelet:
    def __init__(self, registry_dir: Path, prefer: str = "v1.DRAPlugin", timeout: float = 30) -> None:
        self.registry_dir = Path(registry_dir)
        self.prefer = prefer
        self.timeout = timeout
        self.info: Any = None
        self.version = ""
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._pb: Any = None
        self._seen: set[tuple[int, int]] = set()

    def register(self, accept: bool = True, error: str = "") -> Any:
        """The plugin watcher's handshake with the next registration socket this kubelet has not seen yet."""
        sock = wait_for_socket(self.registry_dir, timeout=self.timeout, skip=self._seen)
        self._seen.add(_identity(sock))
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            reg = reg_grpc.RegistrationStub(ch)  # type: ignore[no-untyped-call]
            info = reg.GetInfo(reg_pb.InfoRequest(), timeout=self.timeout)
            versions = list(info.supported_versions)
            usable = [v for v in (self.prefer, *KNOWN) if v in versions]
            ok = accept and info.type == "DRAPlugin" and bool(usable)
            reason = error or ("" if ok else f"type {info.type!r}, versions {versions}: nothing this kubelet speaks")
            reg.NotifyRegistrationStatus(reg_pb.RegistrationStatus(plugin_registered=ok, error=reason))
        self.info = info
        if ok:
            self.version = usable[0]
            self._pb, grpc_mod = KNOWN[self.version]
            self.close()
            self._channel = grpc.insecure_channel(f"unix:{info.endpoint}")
            self._stub = grpc_mod.DRAPluginStub(self._channel)
        return info

    def _claims(self, claims: list[Claim]) -> list[Any]:
        return [self._pb.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]

    def prepare(self, claims: list[Claim], timeout: float | None = None) -> Any:
        req = self._pb.NodePrepareResourcesRequest(claims=self._claims(claims))
        return self._stub.NodePrepareResources(req, timeout=timeout or self.timeout)

    def unprepare(self, claims: list[Claim], timeout: float | None = None) -> Any:
        req = self._pb.NodeUnprepareResourcesRequest(claims=self._claims(claims))
        return self._stub.NodeUnprepareResources(req, timeout=timeout or self.timeout)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
