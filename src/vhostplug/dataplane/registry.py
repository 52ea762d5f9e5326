"""The backend registry: a plain dict from name to a factory taking the agent's dataplane settings (the agent's
config accepts exactly these names). Test doubles are not here: ``vhostplug_testsupport.noopdataplane``.
A factory imports its backend's client libraries when called, so reading the names (the agent's config check) is
quick: a refused configuration answers before ovsdbapp is loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vhostplug.protocols import Dataplane


def _ovs(endpoint: str, ovs_rundir: Path, forget_macs: bool) -> Dataplane:
    from vhostplug.dataplane.ovs import OvsDataplane

    return OvsDataplane(endpoint, ovs_rundir=ovs_rundir, forget_macs=forget_macs)


#: name -> factory(endpoint, switch's run folder, whether a port's link change makes the switch forget its MAC)
BACKENDS: dict[str, Callable[[str, Path, bool], Dataplane]] = {"ovs": _ovs}


def create(name: str, endpoint: str, ovs_rundir: Path, forget_macs: bool = False) -> Dataplane:
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown dataplane backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return factory(endpoint, ovs_rundir, forget_macs)
