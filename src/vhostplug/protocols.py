"""The seams of vhostplug, in one place: what a dataplane backend, a device source and a clock must offer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from vhostplug.model import Attachment, DataplaneHealth, VhostUserPort


class DataplaneError(Exception):
    """A dataplane operation failed; the message is meant for the CNI error's ``msg``."""


class DataplaneUnavailable(DataplaneError):
    """The dataplane cannot be reached (OVSDB down, DPDK not initialised)."""


@runtime_checkable
class Dataplane(Protocol):
    """A userspace switch that can realise vhost-user attachments (OVS-DPDK today)."""

    def health(self) -> DataplaneHealth:
        """Liveness asked of the switch now: is the database reachable and the datapath initialised."""
        ...

    def ready(self) -> DataplaneHealth:
        """:meth:`health` as last seen on a kept connection (no round trip), for the attach path."""
        ...

    def attach(self, attachment: Attachment, timeout: float = 5.0) -> VhostUserPort:
        """Create the port in one transaction (bridge made if missing), wait for its ofport, return it."""
        ...

    def detach(self, port_name: str) -> bool:
        """Remove the port and any bridge that became empty and was made by us. False when it was not there."""
        ...

    def get_port(self, port_name: str) -> VhostUserPort | None: ...

    def list_ports(self, only_ours: bool = True) -> Sequence[VhostUserPort]:
        """Every vhost-user port (only those tagged by vhostplug when ``only_ours``)."""
        ...

    def vhost_sock_dir(self) -> str:
        """The folder where the switch creates sockets of client-mode (``dpdkvhostuser``) ports."""
        ...

    def close(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...


class HealthProbe(Protocol):
    """Something the device plugin asks whether its devices are usable right now."""

    def __call__(self) -> tuple[bool, str]: ...
