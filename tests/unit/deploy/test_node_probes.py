"""The node DaemonSet's probes ask the agent's own HTTP endpoint: the ConfigMap's metricsPort, on the node's
loopback (hostNetwork), liveness on /healthz and readiness on /readyz (see docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NODE = Path(__file__).resolve().parents[3] / "deploy" / "node" / "vhostplug-node.yaml"


def test_agent_probes_use_the_agents_endpoint() -> None:
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(NODE.read_text()) if d]
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["agent.yaml"])
    pod = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    assert pod["hostNetwork"] is True and config.get("metricsAddress", "127.0.0.1") == "127.0.0.1"
    paths = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        get = agent[probe]["httpGet"]
        assert (get["host"], get["port"], get["path"]) == ("127.0.0.1", config["metricsPort"], path), probe
    # liveness gives the agent a minute before a restart; readiness answers within its 2 s bound
    live = agent["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60
    assert agent["readinessProbe"]["timeoutSeconds"] >= 3
