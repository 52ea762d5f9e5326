"""The claim store survives a SIGKILLed agent: Unprepare after a restart removes exactly what Prepare made, and the
restart check makes a port that went missing meanwhile again and removes a DRA port that no record claims."""

from __future__ import annotations

import signal

from tests.functional.dra.conftest import BRIDGE, NODE
from tests.functional.dra.test_prepare import _dra_ports, _leftovers, _seed
from vhostplug import ovsvhost
from vhostplug.lab.apiserver import ApiServer
from vhostplug.lab.drakubelet import DraKubelet
from vhostplug.model import Attachment
from vhostplug_testsupport import draobjects
from vhostplug_testsupport.cniagent import AgentProc


def _restart(agent: AgentProc, kubelet: DraKubelet) -> None:
    agent.stop(signal.SIGKILL)
    agent.start()
    kubelet.register()  # kubelet's plugin watcher sees the new registration socket


def test_unprepare_after_sigkill_removes_what_prepare_made(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    c = _seed(apiserver, draobjects.claim("crash-a", NODE, [("vhost", "vhu-br-dra-10"), ("vhost2", "vhu-br-dra-11")]))
    assert kubelet.prepare([c]).claims[c.uid].error == ""
    made = _leftovers(dra_agent, c)
    assert len([n for n in made if n.startswith("vhu")]) == 2
    _restart(dra_agent, kubelet)
    # Prepare repeated after the restart answers from the store, and the ports are the same
    assert kubelet.prepare([c]).claims[c.uid].error == ""
    assert _leftovers(dra_agent, c) == made
    assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert _leftovers(dra_agent, c) == []
    assert list(dra_agent.socket_root.glob("dra-*")) == []


def test_restart_remakes_a_missing_port_and_removes_an_orphan(
    dra_agent: AgentProc, kubelet: DraKubelet, apiserver: ApiServer
) -> None:
    c = _seed(apiserver, draobjects.claim("crash-b", NODE, [("vhost", "vhu-br-dra-12")], params={"mtu": 2000}))
    assert kubelet.prepare([c]).claims[c.uid].error == ""
    [port] = [p for p in _dra_ports(dra_agent).values() if p.external_ids[ovsvhost.ID_DRA_CLAIM] == c.uid]
    dp = dra_agent.dataplane
    assert dp is not None
    dra_agent.stop(signal.SIGKILL)
    dp.detach(port.name)  # someone removed the port while the agent was down
    orphan = Attachment(
        container_id="orphan-uid",
        ifname="vhost",
        port_name="vhuorphan00001",
        socket_dir=dra_agent.socket_root,
        socket_name="orphan.sock",
        bridge=BRIDGE,
        extra_ids=((ovsvhost.ID_DRA_CLAIM, "orphan-uid"),),
    )
    dp.attach(orphan)
    dra_agent.start()
    kubelet.register()
    back = dp.get_port(port.name)
    assert back is not None and back.mtu == 2000 and back.external_ids[ovsvhost.ID_DRA_CLAIM] == c.uid
    assert dp.get_port("vhuorphan00001") is None
    assert kubelet.unprepare([c]).claims[c.uid].error == ""
    assert _leftovers(dra_agent, c) == []
