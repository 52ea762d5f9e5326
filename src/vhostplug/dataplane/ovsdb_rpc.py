"""A minimal synchronous OVSDB JSON-RPC (RFC 7047) `transact` over a unix socket.

Used where a kept ovsdbapp connection would be overkill: bootstrapping a fresh database in the lab, and one-shot
reads by tests and the audit. The agent's hot path uses the ovsdbapp backend in ``dataplane.ovs``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

DB = "Open_vSwitch"


class OvsdbRpcError(Exception):
    pass


def _endpoint_path(endpoint: str) -> str:
    if endpoint.startswith("unix:"):
        return endpoint[len("unix:") :]
    if endpoint.startswith("/"):
        return endpoint
    raise OvsdbRpcError(f"only unix: OVSDB endpoints are supported here, not {endpoint!r}")


def transact(endpoint: str, ops: list[dict[str, Any]], timeout: float = 5.0) -> list[dict[str, Any]]:
    """Run one transaction; return its per-operation results, raising on any operation error."""
    path = _endpoint_path(endpoint)
    request = {"method": "transact", "params": [DB, *ops], "id": 1}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise OvsdbRpcError(f"cannot connect to OVSDB at {path}: {exc.strerror or exc}") from exc
        try:
            return _exchange(sock, request)
        except TimeoutError as exc:  # a stopped or overloaded ovsdb-server: connected but silent
            raise OvsdbRpcError(f"OVSDB at {path} did not answer within {timeout:g}s") from exc
        except OSError as exc:
            raise OvsdbRpcError(f"OVSDB at {path} failed mid-transaction: {exc.strerror or exc}") from exc


def _exchange(sock: socket.socket, request: dict[str, Any]) -> list[dict[str, Any]]:
    sock.sendall(json.dumps(request).encode())
    decoder = json.JSONDecoder()
    buf = ""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise OvsdbRpcError("OVSDB closed the connection before answering")
        buf += chunk.decode()
        try:
            msg, _ = decoder.raw_decode(buf.lstrip())
        except ValueError:
            continue
        buf = ""
        if msg.get("method") == "echo":
            sock.sendall(json.dumps({"result": msg.get("params", []), "error": None, "id": msg["id"]}).encode())
            continue
        if msg.get("id") != 1:
            continue
        if msg.get("error"):
            raise OvsdbRpcError(f"OVSDB error: {msg['error']}")
        results: list[dict[str, Any]] = msg["result"]
        for r in results:
            if r and "error" in r:
                raise OvsdbRpcError(f"OVSDB operation failed: {r['error']}: {r.get('details', '')}")
        return results


def ovs_map(value: Any) -> dict[str, str]:
    """Decode an OVSDB ``["map", [[k, v], ...]]`` value."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(k): _scalar(v) for k, v in value[1]}
    return {}


def ovs_set(value: Any) -> list[Any]:
    """Decode an OVSDB set (or a lone scalar) into a list."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return [_scalar(v) for v in value[1]]
    return [_scalar(value)]


def _scalar(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 2 and v[0] in ("uuid", "named-uuid"):
        return v[1]
    return v


def select(
    endpoint: str,
    table: str,
    where: list[Any] | None = None,
    columns: list[str] | None = None,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    op: dict[str, Any] = {"op": "select", "table": table, "where": where or []}
    if columns is not None:
        op["columns"] = columns
    rows: list[dict[str, Any]] = transact(endpoint, [op], timeout)[0]["rows"]
    return rows
