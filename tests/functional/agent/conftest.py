"""A real agent on the session's private OVS for the shim/agent boundary tests (see vhostplug_testsupport.cniagent)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vhostplug.lab.ovs import PrivateOvs
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent


@pytest.fixture
def cni_agent(private_ovs: PrivateOvs) -> Iterator[AgentProc]:
    a = make_agent(private_ovs)
    try:
        yield a
    finally:
        stop_agent(a)
