"""The agent's Prometheus metrics: its CNI requests (count by verb and CNI code, latency), its readiness, and each
attachment's dataplane counters and link state as OVS counts them.

The attachment metrics are read at scrape time in one OVSDB round trip (a ``select`` of the Interface table's name,
type, external_ids, statistics and link_state on a fresh connection: the agent's kept connection does not monitor
``statistics``, which changes every few seconds on every port). Only vhostplug's ports (``vhostplug-attachment`` in
external_ids) are reported, labelled with what ADD stored on the port: the pod's namespace and name (from
``CNI_ARGS`` ``K8S_POD_NAMESPACE`` / ``K8S_POD_NAME``), the interface in the pod, the network, and the OVS port.
``rx`` and ``tx`` are the switch's view, as OVS reports them: ``rx`` is what the switch received from the pod's
port (the pod sent it), ``tx`` what the switch sent into it. ovs-vswitchd refreshes the counters every
``other_config:stats-update-interval`` (5 s by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vhostplug import ovsvhost
from vhostplug.dataplane import ovsdb_rpc
from vhostplug.model import DataplaneHealth

#: OVS Interface statistics keys -> (metric suffix, help)
COUNTERS = {
    "rx_packets": ("rx_packets", "packets the switch received from the attachment's port (sent by the pod)"),
    "tx_packets": ("tx_packets", "packets the switch sent into the attachment's port (received by the pod)"),
    "rx_bytes": ("rx_bytes", "bytes the switch received from the attachment's port"),
    "tx_bytes": ("tx_bytes", "bytes the switch sent into the attachment's port"),
    "rx_dropped": ("rx_dropped", "packets from the pod the switch dropped"),
    "tx_dropped": ("tx_dropped", "packets for the pod the switch dropped (e.g. its rings full: the app not polling)"),
    "rx_errors": ("rx_errors", "receive errors on the attachment's port"),
    "tx_errors": ("tx_errors", "transmit errors on the attachment's port"),
}
LABELS = ["namespace", "pod", "interface", "network", "port"]
STATS_WAIT = 2.0  # seconds a scrape waits for OVSDB
PREFIX = "vhostplug_attachment_"


class AttachmentStats(Collector):
    """Per-attachment counters and link state, read from OVSDB at each scrape."""

    def __init__(self, endpoint: str, wait: float = STATS_WAIT) -> None:
        self.endpoint = endpoint
        self.wait = wait

    def describe(self) -> Iterable[Metric]:
        return []  # nothing read at registration: the metrics are known only at scrape time

    def read(self) -> list[dict[str, Any]]:
        """vhostplug's Interface rows: name, external_ids, statistics and link_state (one ``select``)."""
        op = {
            "op": "select",
            "table": "Interface",
            "where": [],
            "columns": ["name", "type", "external_ids", "statistics", "link_state"],
        }
        rows = ovsdb_rpc.transact(self.endpoint, [op], timeout=self.wait)[0]["rows"]
        out = []
        for row in rows:
            if row.get("type") not in ovsvhost.VHOST_TYPES:
                continue
            ids = _ovs_map(row.get("external_ids"))
            if ovsvhost.ID_ATTACHMENT in ids:
                out.append({**row, "external_ids": ids, "statistics": _ovs_map(row.get("statistics"))})
        return out

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        families = {
            key: CounterMetricFamily(PREFIX + suffix, text, labels=LABELS) for key, (suffix, text) in COUNTERS.items()
        }
        link = GaugeMetricFamily(PREFIX + "link_up", "1 when the attachment's port link is up (the app is connected)",
                                 labels=LABELS)  # fmt: skip
        up = GaugeMetricFamily("vhostplug_attachment_stats_up", "1 when the last read of OVS's counters worked")
        count = GaugeMetricFamily("vhostplug_attachments", "vhostplug's ports in OVS")
        try:
            rows = self.read()
        except ovsdb_rpc.OvsdbRpcError:
            rows, ok = [], 0.0
        else:
            ok = 1.0
        for row in rows:
            ids, stats = row["external_ids"], row["statistics"]
            labels = [
                ids.get(ovsvhost.ID_POD_NAMESPACE, ""),
                ids.get(ovsvhost.ID_POD_NAME, ""),
                ids.get(ovsvhost.ID_IFNAME, ""),
                ids.get(ovsvhost.ID_NETWORK, ""),
                str(row.get("name", "")),
            ]
            for key, family in families.items():
                if isinstance(stats.get(key), int):
                    family.add_metric(labels, float(stats[key]))
            state = row.get("link_state")
            link.add_metric(labels, 1.0 if state == "up" else 0.0)
        up.add_metric([], ok)
        count.add_metric([], float(len(rows)))
        seconds = GaugeMetricFamily("vhostplug_attachment_stats_seconds", "how long the last read of OVS took")
        seconds.add_metric([], time.perf_counter() - started)
        yield from families.values()
        yield from (link, up, count, seconds)


class Metrics:
    """Every metric of the agent, in a registry of its own (served by :mod:`vhostplug.agent.http`)."""

    def __init__(self, ovsdb: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vhostplug_cni_requests",
            "CNI requests by verb and CNI code (0: success; 11: try again; see docs/reliability.md)",
            ["verb", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vhostplug_cni_seconds",
            "agent-side CNI latency, from request in to answer out",
            ["verb"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.ready = Gauge("vhostplug_agent_ready", "1 when the agent can add attachments now", registry=self.registry)
        if ovsdb is not None:
            self.registry.register(AttachmentStats(ovsdb))

    def observe(self, verb: str, code: int, seconds: float) -> None:
        self.requests.labels(verb, str(code)).inc()
        self.latency.labels(verb).observe(seconds)

    def readiness_seen(self, health: DataplaneHealth) -> None:
        self.ready.set(1.0 if health.ok else 0.0)


Readiness = Callable[[], DataplaneHealth]


def _ovs_map(value: Any) -> dict[str, Any]:
    """An OVSDB ``["map", [[k, v], ...]]`` as a dict (anything else: empty)."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(k): v for k, v in value[1]}
    return {}
