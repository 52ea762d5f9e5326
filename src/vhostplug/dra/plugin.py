"""The DRA kubelet plugin's gRPC side: the DRAPlugin service (v1 and v1beta1, the same messages) on
``<pluginsDir>/<driver>/dra.sock`` and the plugin watcher's Registration service on
``<registryDir>/<driver>-reg.sock`` (type ``DRAPlugin``, the endpoint, the services served as
``v1.DRAPlugin`` / ``v1beta1.DRAPlugin``). Both sockets 0600; the service socket is served before the registration
socket appears, so kubelet never finds an endpoint that does not answer. The work is :class:`vhostplug.dra.driver.Driver`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from vhostplug.dra.api.pluginregistration import api_pb2 as reg_pb
from vhostplug.dra.api.pluginregistration import api_pb2_grpc as reg_grpc
from vhostplug.dra.api.v1 import api_pb2 as v1_pb
from vhostplug.dra.api.v1 import api_pb2_grpc as v1_grpc
from vhostplug.dra.api.v1beta1 import api_pb2 as v1beta1_pb
from vhostplug.dra.api.v1beta1 import api_pb2_grpc as v1beta1_grpc
from vhostplug.dra.driver import ClaimKey, Driver

LOG = logging.getLogger(__name__)
PLUGIN_TYPE = "DRAPlugin"
#: version -> (messages, add-servicer function, servicer base)
SERVICES: dict[str, tuple[Any, Any, Any]] = {
    "v1": (v1_pb, v1_grpc.add_DRAPluginServicer_to_server, v1_grpc.DRAPluginServicer),
    "v1beta1": (v1beta1_pb, v1beta1_grpc.add_DRAPluginServicer_to_server, v1beta1_grpc.DRAPluginServicer),
}


def _keys(request: Any) -> list[ClaimKey]:
    return [ClaimKey(c.namespace, c.name, c.uid) for c in request.claims]


def _servicer(version: str, driver: Driver) -> Any:
    pb, _, base = SERVICES[version]

    class Servicer(base):  # type: ignore[misc,valid-type]
        def NodePrepareResources(self, request: Any, context: Any) -> Any:
            resp = pb.NodePrepareResourcesResponse()
            for uid, result in driver.prepare(_keys(request)).items():
                entry = resp.claims[uid]
                if result.error:
                    entry.error = result.error
                    continue
                for d in result.devices:
                    entry.devices.add(
                        request_names=[d.request],
                        pool_name=d.pool,
                        device_name=d.device,
                        cdi_device_ids=d.cdi_device_ids,
                    )
            return resp

        def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
            resp = pb.NodeUnprepareResourcesResponse()
            for uid, error in driver.unprepare(_keys(request)).items():
                resp.claims[uid].error = error
            return resp

    return Servicer()


class _Registration(reg_grpc.RegistrationServicer):
    def __init__(self, plugin: KubeletPlugin) -> None:
        self.plugin = plugin

    def GetInfo(self, request: Any, context: Any) -> Any:
        p = self.plugin
        return reg_pb.PluginInfo(
            type=PLUGIN_TYPE,
            name=p.driver_name,
            endpoint=str(p.service_socket),
            supported_versions=[f"{v}.DRAPlugin" for v in p.versions],
        )

    def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:
        p = self.plugin
        if request.plugin_registered:
            LOG.info("kubelet registered DRA driver %s", p.driver_name)
            p.registered.set()
        else:
            LOG.error("kubelet refused DRA driver %s: %s", p.driver_name, request.error)
            p.registered.clear()
        p.registration_error = "" if request.plugin_registered else request.error
        return reg_pb.RegistrationStatusResponse()


def _remove_socket(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def _serve(path: Path, add: list[tuple[Any, Any]], workers: int, name: str) -> grpc.Server:
    """Serve on ``path``: bound under a temporary name, made 0600, then renamed over the name (replacing a stale
    socket of an earlier run), so the socket kubelet's plugin watcher sees appear is complete and answers."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = path.with_name(f".{path.name[:-1]}")  # as long as the name: a unix socket path has 107 bytes at most
    _remove_socket(tmp)
    server = grpc.server(futures.ThreadPoolExecutor(workers, thread_name_prefix=name))
    for add_fn, servicer in add:
        add_fn(servicer, server)
    server.add_insecure_port(f"unix:{tmp}")
    server.start()
    try:
        os.chmod(tmp, 0o600, follow_symlinks=False)
        if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket; not replacing it")
        os.rename(tmp, path)
    except BaseException:
        server.stop(None)
        _remove_socket(tmp)
        raise
    return server


class KubeletPlugin:
    def __init__(
        self, driver: Driver, driver_name: str, service_socket: Path, registration_socket: Path, versions: list[str]
    ) -> None:
        self.driver = driver
        self.driver_name = driver_name
        self.service_socket = Path(service_socket)
        self.registration_socket = Path(registration_socket)
        self.versions = list(versions)
        self.registered = threading.Event()
        self.registration_error = ""
        self._servers: list[grpc.Server] = []

    def start(self) -> None:
        adds = [(SERVICES[v][1], _servicer(v, self.driver)) for v in self.versions]
        self._servers.append(_serve(self.service_socket, adds, 4, "dra"))
        reg = [(reg_grpc.add_RegistrationServicer_to_server, _Registration(self))]
        self._servers.append(_serve(self.registration_socket, reg, 2, "dra-reg"))
        LOG.info(
            "DRA driver %s: serving %s on %s, registration on %s",
            self.driver_name,
            ", ".join(self.versions),
            self.service_socket,
            self.registration_socket,
        )

    def stop(self) -> None:
        for server in reversed(self._servers):  # registration first: kubelet stops calling before the service goes
            server.stop(grace=1).wait()
        self._servers.clear()
        _remove_socket(self.registration_socket)
        _remove_socket(self.service_socket)
