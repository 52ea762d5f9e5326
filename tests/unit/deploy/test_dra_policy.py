"""deploy/dra/node-scope-policy.yaml, evaluated with a CEL library (cel-python) as kube-apiserver evaluates a
ValidatingAdmissionPolicy: the DRA agent's service account may create, update and delete only the ResourceSlices of
the node its token names; other users are not matched; a token without a node is refused."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel

from tests.conftest import REPO

DOCS = list(yaml.safe_load_all((REPO / "deploy" / "dra" / "node-scope-policy.yaml").read_text()))
(POLICY,) = [d for d in DOCS if d["kind"] == "ValidatingAdmissionPolicy"]
(BINDING,) = [d for d in DOCS if d["kind"] == "ValidatingAdmissionPolicyBinding"]
AGENT = "system:serviceaccount:vhostplug:vhostplug-dra"
NODE_KEY = "authentication.kubernetes.io/node-name"


def _eval(expression: str, activation: dict[str, Any]) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expression)).evaluate(activation)


def admit(op: str, obj: dict[str, Any] | None, old: dict[str, Any] | None, user: str = AGENT,
          node: str | None = "node-a") -> tuple[bool, str]:  # fmt: skip
    extra = {NODE_KEY: [node]} if node else {}
    act: dict[str, Any] = {
        "request": json_to_cel({"operation": op, "userInfo": {"username": user, "extra": extra}}),
        "object": json_to_cel(obj), "oldObject": json_to_cel(old),
    }  # fmt: skip
    if not all(_eval(c["expression"], act) for c in POLICY["spec"]["matchConditions"]):
        return True, "not matched"
    variables: dict[str, Any] = {}
    for var in POLICY["spec"]["variables"]:
        variables[var["name"]] = _eval(var["expression"], {**act, "variables": json_to_cel(variables)})
    act["variables"] = json_to_cel(variables)
    for v in POLICY["spec"]["validations"]:
        if not _eval(v["expression"], act):
            return False, str(_eval(v["messageExpression"], act)) if "messageExpression" in v else v["message"]
    return True, ""


def _slice(node: str) -> dict[str, Any]:
    return {"metadata": {"name": f"{node}-x"}, "spec": {"nodeName": node, "driver": "vhostuser.vhostplug.io"}}


@pytest.mark.parametrize(
    ("op", "obj", "old", "allowed"),
    [
        ("CREATE", _slice("node-a"), None, True),
        ("UPDATE", _slice("node-a"), _slice("node-a"), True),
        ("DELETE", None, _slice("node-a"), True),
        ("CREATE", _slice("node-b"), None, False),
        ("UPDATE", _slice("node-b"), _slice("node-a"), False),  # moving its slice to another node
        ("UPDATE", _slice("node-a"), _slice("node-b"), False),  # taking over another node's slice
        ("DELETE", None, _slice("node-b"), False),
        ("CREATE", {"metadata": {"name": "x"}, "spec": {"allNodes": True}}, None, False),
    ],
)
def test_the_agent_writes_only_its_nodes_slices(op: str, obj: Any, old: Any, allowed: bool) -> None:
    ok, message = admit(op, obj, old)
    assert ok is allowed, message
    if not ok:
        assert "node-a" in message


def test_other_users_are_not_matched_and_a_token_without_node_is_refused() -> None:
    assert admit("CREATE", _slice("node-b"), None, user="system:node:node-b") == (True, "not matched")
    ok, message = admit("CREATE", _slice("node-a"), None, node=None)
    assert not ok and "names no node" in message
    assert BINDING["spec"] == {"policyName": POLICY["metadata"]["name"], "validationActions": ["Deny"]}
    # it matches the service account the RBAC binds
    (rbac,) = [d for d in yaml.safe_load_all((REPO / "deploy" / "dra" / "rbac.yaml").read_text()) if d["kind"] == "ServiceAccount"]  # fmt: skip
    assert f"system:serviceaccount:{rbac['metadata']['namespace']}:{rbac['metadata']['name']}" == AGENT
