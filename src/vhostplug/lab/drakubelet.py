"""kubelet's DRA side for the lab (no kubelet runs here): the plugin watcher and the DRA gRPC client.

It watches a ``plugins_registry`` folder as kubelet's plugin watcher does: for each new socket it calls the plugin's
``Registration.GetInfo``, takes a plugin of type ``DRAPlugin``, picks the newest DRA service version both know
(``v1.DRAPlugin``, else ``v1beta1.DRAPlugin``), connects to its endpoint and answers ``NotifyRegistrationStatus``.
Then it calls ``NodePrepareResources`` / ``NodeUnprepareResources`` for the claims of a pod, by namespace, name and
UID as kubelet does; the CDI device IDs a prepare returns are applied to a lab pod by :mod:`vhostplug.lab.cdiapply`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from vhostplug.dra.api.pluginregistration import api_pb2 as reg_pb
from vhostplug.dra.api.pluginregistration import api_pb2_grpc as reg_grpc
from vhostplug.dra.api.v1 import api_pb2 as v1_pb
from vhostplug.dra.api.v1 import api_pb2_grpc as v1_grpc
from vhostplug.dra.api.v1beta1 import api_pb2 as v1beta1_pb
from vhostplug.dra.api.v1beta1 import api_pb2_grpc as v1beta1_grpc

PLUGIN_TYPE = "DRAPlugin"
#: the DRA service versions this kubelet speaks, newest first (kubelet's own order)
SERVICES = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
CALL_TIMEOUT = 30.0


class DraKubeletError(RuntimeError):
    pass


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str


@dataclass
class Driver:
    """A registered DRA plugin: its name, the service version chosen, and a channel to its endpoint."""

    name: str
    endpoint: str
    service: str
    registration_socket: Path
    channel: Any = field(repr=False)

    def _api(self) -> tuple[Any, Any]:
        if self.service == "v1.DRAPlugin":
            return v1_pb, v1_grpc.DRAPluginStub(self.channel)  # type: ignore[no-untyped-call]
        return v1beta1_pb, v1beta1_grpc.DRAPluginStub(self.channel)  # type: ignore[no-untyped-call]

    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, Any]:
        """``NodePrepareResources``: claim UID → its ``NodePrepareResourceResponse`` (devices or error)."""
        pb, stub = self._api()
        req = pb.NodePrepareResourcesRequest(
            claims=[pb.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]
        )
        return dict(stub.NodePrepareResources(req, timeout=CALL_TIMEOUT).claims)

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        """``NodeUnprepareResources``: claim UID → its error ("" when done)."""
        pb, stub = self._api()
        req = pb.NodeUnprepareResourcesRequest(
            claims=[pb.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]
        )
        return {uid: r.error for uid, r in stub.NodeUnprepareResources(req, timeout=CALL_TIMEOUT).claims.items()}


class DraKubelet:
    """The plugin watcher on ``registry_dir`` and the registered DRA drivers by name."""

    def __init__(self, registry_dir: Path, poll: float = 0.05) -> None:
        self.registry_dir = Path(registry_dir)
        self.poll = poll
        self.drivers: dict[str, Driver] = {}
        self.rejected: dict[str, str] = {}
        self._seen: set[Path] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._watch, name="dra-plugin-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for d in self.drivers.values():
                d.channel.close()
            self.drivers.clear()

    def __enter__(self) -> DraKubelet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for sock in sorted(self.registry_dir.glob("*.sock")):
                if sock not in self._seen and sock.is_socket():
                    self._seen.add(sock)
                    self._register(sock)
            gone = {s for s in self._seen if not s.exists()}
            if gone:
                self._seen -= gone
                with self._changed:
                    for name in [n for n, d in self.drivers.items() if d.registration_socket in gone]:
                        self.drivers.pop(name).channel.close()
                    self._changed.notify_all()
            self._stop.wait(self.poll)

    def _register(self, sock: Path) -> None:
        with grpc.insecure_channel(f"unix:{sock}") as ch:
            stub = reg_grpc.RegistrationStub(ch)  # type: ignore[no-untyped-call]
            try:
                info = stub.GetInfo(reg_pb.InfoRequest(), timeout=5)
            except grpc.RpcError as exc:
                self.rejected[str(sock)] = f"GetInfo failed: {exc.code().name}"
                return
            error = ""
            service = next((s for s in SERVICES if s in info.supported_versions), None)
            if info.type != PLUGIN_TYPE:
                error = f"plugin type {info.type!r} is not {PLUGIN_TYPE}"
            elif service is None:
                error = f"none of the DRA services {list(info.supported_versions)} is one of {list(SERVICES)}"
            elif not info.endpoint.startswith("/"):
                error = f"endpoint {info.endpoint!r} is not an absolute socket path"
            with contextlib.suppress(grpc.RpcError):
                stub.NotifyRegistrationStatus(
                    reg_pb.RegistrationStatus(plugin_registered=not error, error=error), timeout=5
                )
        if error or service is None:
            self.rejected[str(sock)] = error
            return
        driver = Driver(info.name, info.endpoint, service, sock, grpc.insecure_channel(f"unix:{info.endpoint}"))
        with self._changed:
            old = self.drivers.pop(info.name, None)
            if old is not None:
                old.channel.close()
            self.drivers[info.name] = driver
            self._changed.notify_all()

    def wait_for(self, name: str, timeout: float = 20.0) -> Driver:
        """The driver ``name`` once it has registered."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while name not in self.drivers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DraKubeletError(
                        f"DRA driver {name} did not register in {self.registry_dir} within {timeout:.0f}s "
                        f"(rejected: {self.rejected or 'none'})"
                    )
                self._changed.wait(left)
            return self.drivers[name]
