"""The seams of vhostplug, in one place: what a dataplane backend, a device source, a device kind and the DRA
ResourceSlice publisher's API server must offer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vhostplug.fsutil import Ownership
from vhostplug.model import Attachment, DataplaneHealth, DraDevice, NetdevPort, VhostUserPort

if TYPE_CHECKING:  # the kubelet API's generated types; importing them here would pull grpc into every user
    import grpc

    from vhostplug.deviceplugin.api.deviceplugin_pb2 import ContainerAllocateResponse


class DataplaneError(Exception):
    """A dataplane operation failed; the message is meant for the CNI error's ``msg``."""


class DataplaneUnavailable(DataplaneError):
    """The dataplane cannot be reached (OVSDB down, DPDK not initialised)."""


class SocketPlacementError(DataplaneError):
    """:meth:`Dataplane.place_client_socket` could not move the socket the switch made into the pod's folder (a
    filesystem problem, not the switch's)."""


@runtime_checkable
class Dataplane(Protocol):
    """A userspace switch that can realise vhost-user attachments (OVS-DPDK today)."""

    def health(self, bridges: Sequence[str] = ()) -> DataplaneHealth:
        """Asked of the switch now: is the database reachable, the switch alive and its datapath initialised, and
        does each of ``bridges`` exist."""
        ...

    def ready(self) -> DataplaneHealth:
        """:meth:`health` as last seen on a kept connection (no round trip), for the attach path."""
        ...

    def attach(
        self, attachment: Attachment, timeout: float = 5.0, meanwhile: Callable[[], None] | None = None
    ) -> VhostUserPort:
        """Create the port in one transaction (bridge made if missing), run ``meanwhile`` (the caller's work that
        does not need the port) while the switch applies it, wait for its ofport, return it. When ``meanwhile``
        raises, the port is removed again and the error goes on."""
        ...

    def attach_netdev(self, port: NetdevPort, timeout: float = 5.0) -> VhostUserPort:
        """Put an existing kernel netdev on ``port.bridge`` as a ``system`` port in one transaction (bridge made if
        missing), wait for its ofport, return it; the netdev must be in :meth:`netdev_namespace`."""
        ...

    def netdev_namespace(self) -> str | None:
        """Path of the network namespace where the switch opens kernel netdevs; None when it is the agent's own."""
        ...

    def detach(self, port_name: str) -> bool:
        """Remove the port (its bridge stays). False when it was not there."""
        ...

    def detach_netdev(self, port_name: str, timeout: float = 5.0) -> bool:
        """:meth:`detach` a kernel netdev's port and wait (up to ``timeout``) until the switch has let go of the netdev,
        so that the caller can give it back its own link state. False when it was not there."""
        ...

    def get_port(self, port_name: str) -> VhostUserPort | None: ...

    def watch(self) -> None:
        """Connect now and keep the switch's changes in view (the OVS backend acts on its ports' link changes);
        raises :class:`DataplaneUnavailable` while it cannot."""
        ...

    def list_ports(self, only_ours: bool = True) -> Sequence[VhostUserPort]:
        """Every port that can be an attachment's (:func:`vhostplug.ovsvhost.attachment_port`: vhost-user ports and vDPA
        representors), only those tagged by vhostplug when ``only_ours``."""
        ...

    def place_client_socket(self, attachment: Attachment, own: Ownership, wait: float) -> None:
        """Client mode: wait for the socket the switch makes for ``attachment`` and move it to
        ``attachment.socket_path`` with ``own``'s owner and mode (nothing to do for a switch that makes none)."""
        ...

    def return_client_sockets(self, own: Ownership) -> list[str]:
        """Move client-mode sockets the switch made again (after its restart) back to where their attachments
        want them; return the paths moved. Never raises: a socket it cannot move is logged and left."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DeviceState:
    """One device of a :class:`DeviceSource` as kubelet sees it: its ID, its health, its NUMA node if known."""

    id: str
    healthy: bool
    numa: int | None = None


class AllocateError(Exception):
    """A :class:`DeviceSource` cannot serve Allocate; the device plugin answers a gRPC status with this code and
    message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class DeviceSource(Protocol):
    """One kubelet resource: the pool of devices the device plugin serves under :attr:`resource_name`.

    The pool contract, as the device plugin relies on it:

    - :meth:`poll` lists every device now in the pool with its health; cheap (called every health interval and after
      each rescan) and never raises (an unusable pool answers its devices unhealthy, or none).
    - :meth:`check` raises :class:`AllocateError` (a gRPC status code and a short message) when
      ``ids`` cannot be allocated, and changes nothing. Allocate calls it for every container of a request first.
    - :meth:`allocate` prepares ``ids`` (already checked) and answers what the container gets: mounts, devices,
      env vars, device-info files. It may still raise ``AllocateError`` for a race it could not check beforehand.
    - :meth:`cleanup` removes what allocate left outside pods (device-info files) when the plugin stops.
    """

    @property
    def resource_name(self) -> str: ...

    def poll(self) -> Sequence[DeviceState]: ...

    def check(self, ids: Sequence[str]) -> None: ...

    def allocate(self, ids: Sequence[str]) -> ContainerAllocateResponse: ...

    def cleanup(self) -> None: ...


class DeviceKind(Protocol):
    """A kind of device (vhost-user folders, vDPA, ...): its sources built from the config, and its discovery.

    :meth:`rescan` looks for devices now and hands each to one of :attr:`sources` (a kind with fixed devices does
    nothing); the device plugin calls it at start, every :attr:`rescan_seconds` (``None``: never) and on demand.
    """

    @property
    def sources(self) -> Sequence[DeviceSource]: ...

    @property
    def rescan_seconds(self) -> float | None: ...

    def rescan(self) -> None: ...


class SliceApi(Protocol):
    """The API server as the DRA ResourceSlice publisher needs it (objects as JSON dicts).

    Every method raises :class:`SliceApiError` (the HTTP status, 0 when unreachable, and the server's message) when
    the server refuses or cannot be reached; nothing is retried here.
    """

    def list_slices(self, node: str, driver: str) -> list[dict[str, Any]]: ...

    def create_slice(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def replace_slice(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def delete_slice(self, name: str) -> None: ...

    def node_uid(self, node: str) -> str | None: ...

    def close(self) -> None: ...


class SliceApiError(Exception):
    """The API server refused a ResourceSlice call (``code``: HTTP status, 0: unreachable)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
class DeviceCatalog(Protocol):
    """The DRA driver's devices on this node, as published in its ResourceSlices: Prepare asks it what an allocated
    ``(pool, device)`` is (kind, bridge, vDPA device). ``None``: not a device of this node."""

    def lookup(self, pool: str, device: str) -> DraDevice | None: ...
