"""The agent's HTTP endpoint with a real Prometheus: two pods' ports (ADD through the shim with the pod's CNI_ARGS)
pass testpmd traffic through OVS; Prometheus scrapes the agent every second and a PromQL query through its HTTP API
returns each pod's packet counters, labelled with namespace, pod, interface, network and port; the request metrics
count the ADDs by verb and CNI code; /healthz and /readyz answer."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.testpmd import Testpmd
from vhostplug.model import port_name_for
from vhostplug_testsupport.cniagent import AgentProc, make_agent, stop_agent
from vhostplug_testsupport.containerd_node import free_port
from vhostplug_testsupport.prometheus import Prometheus


def _wait(cond: Callable[[], object], timeout: float, what: str) -> None:
    until = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.2)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def metrics_agent(private_ovs: PrivateOvs) -> Iterator[tuple[AgentProc, int]]:
    port = free_port()
    a = make_agent(private_ovs, metricsPort=port)
    try:
        yield a, port
    finally:
        stop_agent(a)


def test_prometheus_scrapes_each_pods_packet_counters(metrics_agent: tuple[AgentProc, int], unique: str) -> None:
    agent, port = metrics_agent
    _wait(lambda: _get(port, "/readyz")[0] == 200, 20, "/readyz 200")
    assert _get(port, "/healthz") == (200, "ok\n")
    conf = agent.netconf()
    socks = {}
    for pod in ("a", "b"):
        agent.allocate(f"{pod}{unique}")
        r = agent.run(
            "ADD",
            {**conf, "runtimeConfig": {"deviceID": f"{pod}{unique}"}},
            f"{pod}{unique}",
            args=f"K8S_POD_NAMESPACE=ns{unique};K8S_POD_NAME=pod-{pod};K8S_POD_INFRA_CONTAINER_ID={pod}{unique}",
        )
        assert r.code == 0, r.raw
        socks[pod] = r.out["interfaces"][0]["socketPath"]
    app_a = Testpmd([f"net_virtio_user0,path={socks['a']},server=1"], file_prefix=f"ma{unique}")
    app_b = Testpmd([f"net_virtio_user0,path={socks['b']},server=1"], file_prefix=f"mb{unique}")
    prom = Prometheus([f"127.0.0.1:{port}"])
    try:
        app_a.start()
        app_b.start()
        app_a.wait_link_up()
        app_b.wait_link_up()
        ports = [port_name_for(f"{pod}{unique}", "net1") for pod in ("a", "b")]
        _wait(lambda: all(agent.dataplane.get_port(p).connected for p in ports), 20, "OVS connected")  # type: ignore[union-attr]
        prom.start()
        app_b.cmd("start")
        app_a.cmd("start tx_first 8")
        seeded = time.monotonic()
        # OVS publishes its counters every 5 s; Prometheus scrapes every second: wait for the query to see them
        found: dict[str, float] = {}

        def counted() -> bool:
            for direction in ("rx", "tx"):
                for series in prom.query(f'vhostplug_attachment_{direction}_packets_total{{namespace="ns{unique}"}}'):
                    found[f"{series['metric']['pod']}/{direction}"] = float(series["value"][1])
            # what pod-a sent the switch received, and flooded into pod-b
            if found.get("pod-a/rx", 0) > 0 and found.get("pod-b/tx", 0) > 0:
                return True
            nonlocal seeded
            if time.monotonic() - seeded > 6 and app_b.stats()[0].rx_packets == 0:
                app_a.cmd("stop")  # the very first burst is sometimes dropped while OVS learns the ports: again
                app_a.cmd("start tx_first 8")
                seeded = time.monotonic()
            return False

        try:
            _wait(counted, 30, "both pods' packet counters in Prometheus")
        except AssertionError:
            raise AssertionError(f"{found}; targets up: {prom.targets_up()}\n{prom.log()[-1500:]}") from None
        links = prom.query(f'vhostplug_attachment_link_up{{namespace="ns{unique}"}}')
    finally:
        app_a.stop()
        app_b.stop()
        prom.stop()
    assert set(found) == {"pod-a/rx", "pod-a/tx", "pod-b/rx", "pod-b/tx"}, found
    (series_a,) = [s for s in prom_series(links) if s["pod"] == "pod-a"]
    assert series_a == {
        "__name__": "vhostplug_attachment_link_up",
        "instance": f"127.0.0.1:{port}",
        "job": "vhostplug-agent",
        "namespace": f"ns{unique}",
        "pod": "pod-a",
        "interface": "net1",
        "network": "vhnet",
        "port": port_name_for(f"a{unique}", "net1"),
    }
    status, text = _get(port, "/metrics")
    assert status == 200
    assert 'vhostplug_cni_requests_total{code="0",verb="ADD"} 2.0' in text
    assert "vhostplug_agent_ready 1.0" in text
    assert 'vhostplug_cni_seconds_bucket{le="0.1",verb="ADD"}' in text
    for pod in ("a", "b"):
        assert agent.run("DEL", {**conf, "runtimeConfig": {"deviceID": f"{pod}{unique}"}}, f"{pod}{unique}").code == 0


def prom_series(result: list[dict[str, object]]) -> list[dict[str, str]]:
    return [dict(s["metric"]) for s in result]  # type: ignore[call-overload]


def test_a_request_the_agent_refuses_is_counted_by_its_cni_code(metrics_agent: tuple[AgentProc, int]) -> None:
    agent, port = metrics_agent
    r = agent.run("ADD", agent.netconf(bridge="br-not-allowed"), "refused1")
    assert r.code == 1 and r.out["code"] == 7, r.raw
    _status, text = _get(port, "/metrics")
    assert 'vhostplug_cni_requests_total{code="7",verb="ADD"} 1.0' in text
