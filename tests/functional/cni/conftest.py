"""Fixtures for CNI tests: a real `vhostplug agent` process on the private OVS, the installed shim, and a runner
that execs the shim exactly as a container runtime does (environment + netconf on stdin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, CniResult, make_agent, stop_agent

__all__ = ["AgentProc", "CniResult", "make_agent"]


@pytest.fixture
def agent(private_ovs: PrivateOvs) -> Iterator[AgentProc]:
    a = make_agent(private_ovs)
    try:
        yield a
    finally:
        stop_agent(a)
