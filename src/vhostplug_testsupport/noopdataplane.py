"""A test double of the ``Dataplane`` seam that keeps attachments in memory: for tests of the CNI verbs without a
switch, and for running a real agent process without one.

The product's backend registry (``vhostplug.dataplane.registry.BACKENDS``) does not know it, so no production config
can select it. ``python -m vhostplug_testsupport.noopdataplane <vhostplug arguments>`` (:data:`NOOP_VHOSTPLUG`) runs
the ``vhostplug`` command with it registered as the ``noop`` backend, for tests and benchmarks that start an agent
with ``dataplane: {backend: noop}``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vhostplug import ovsvhost
from vhostplug.fsutil import Ownership
from vhostplug.model import Attachment, DataplaneHealth, NetdevPort, VhostUserPort


class NoopDataplane:
    name = "noop"

    def __init__(self) -> None:
        self._ports: dict[str, VhostUserPort] = {}

    def health(self, bridges: Sequence[str] = ()) -> DataplaneHealth:
        return DataplaneHealth(True, True, "noop dataplane")

    def ready(self) -> DataplaneHealth:
        return self.health()

    def watch(self) -> None:
        pass

    def attach(
        self, attachment: Attachment, timeout: float = 5.0, meanwhile: Callable[[], None] | None = None
    ) -> VhostUserPort:
        if meanwhile is not None:
            meanwhile()  # nothing was made yet that it could leave behind
        port = VhostUserPort(
            name=attachment.port_name,
            bridge=attachment.bridge,
            ovs_type=attachment.mode.ovs_type,
            socket_path=str(attachment.socket_path),
            ofport=len(self._ports) + 1,
            external_ids=attachment.external_ids(),
            status={},
            mtu=attachment.mtu,
            vlan=attachment.vlan,
        )
        self._ports.setdefault(attachment.port_name, port)
        return self._ports[attachment.port_name]

    def attach_netdev(self, port: NetdevPort, timeout: float = 5.0) -> VhostUserPort:
        made = VhostUserPort(
            port.name, port.bridge, ovsvhost.TYPE_SYSTEM, "", len(self._ports) + 1, dict(port.external_ids), {}, port.mtu, port.vlan
        )
        return self._ports.setdefault(port.name, made)

    def netdev_namespace(self) -> str | None:
        return None

    def detach(self, port_name: str) -> bool:
        return self._ports.pop(port_name, None) is not None

    def detach_netdev(self, port_name: str, timeout: float = 5.0) -> bool:
        return self.detach(port_name)

    def get_port(self, port_name: str) -> VhostUserPort | None:
        return self._ports.get(port_name)

    def list_ports(self, only_ours: bool = True) -> Sequence[VhostUserPort]:
        return list(self._ports.values())

    def place_client_socket(self, attachment: Attachment, own: Ownership, wait: float) -> None:
        return None  # no switch, no socket to move

    def return_client_sockets(self, own: Ownership) -> list[str]:
        return []

    def close(self) -> None:
        self._ports.clear()


#: argv of the ``vhostplug`` command with the ``noop`` backend registered
NOOP_VHOSTPLUG = [sys.executable, "-m", "vhostplug_testsupport.noopdataplane"]


def _noop(endpoint: str, ovs_rundir: Path, forget_macs: bool) -> NoopDataplane:
    return NoopDataplane()


def main() -> None:
    from vhostplug import cli
    from vhostplug.dataplane.registry import BACKENDS

    BACKENDS["noop"] = _noop
    sys.argv[0] = "vhostplug"
    cli.main()


if __name__ == "__main__":
    main()
