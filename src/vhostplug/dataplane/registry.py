"""The backend registry: a plain dict from name to a factory taking the agent's dataplane settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vhostplug.dataplane.noop import NoopDataplane
from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.protocols import Dataplane


def _ovs(endpoint: str, ovs_rundir: Path) -> Dataplane:
    return OvsDataplane(endpoint, ovs_rundir=ovs_rundir)


def _noop(endpoint: str, ovs_rundir: Path) -> Dataplane:
    return NoopDataplane()


BACKENDS: dict[str, Callable[[str, Path], Dataplane]] = {"ovs": _ovs, "noop": _noop}


def create(name: str, endpoint: str, ovs_rundir: Path) -> Dataplane:
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown dataplane backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return factory(endpoint, ovs_rundir)
