"""Fixtures shared by the functional suites: a real `vhostplug agent` process on the session's private OVS-DPDK
(see vhostplug_testsupport.cniagent: the installed shim, and a runner that execs it exactly as a container runtime
does, environment + netconf on stdin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent


@pytest.fixture
def agent(private_ovs: PrivateOvs) -> Iterator[AgentProc]:
    a = make_agent(private_ovs)
    try:
        yield a
    finally:
        stop_agent(a)
