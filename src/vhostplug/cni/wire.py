"""The shim <-> agent wire format: one request and one answer per unix-socket connection, both ends in this module.

request  ``VHP2 <env-bytes>\\n`` + ``CNI_*=value`` entries joined by NUL + the netconf bytes from stdin; the shim
         then shuts down its sending side, so the request ends at end-of-stream (at most :data:`MAX_REQUEST` bytes)
answer   ``<exit-code> <agent-ms>\\n`` + what the plugin prints on stdout (at most :data:`MAX_REPLY` bytes)

The stdlib-only CNI shim imports this module (``install_shim`` inlines it into the installed executable, which runs
under ``python3 -I -S``), so it imports nothing at module level and ``json`` only inside the agent-side decoder:
the shim's happy path never loads ``json``. The agent decodes a request once, here: the environment (strict UTF-8)
and the netconf (one ``json.loads``, bounded in size and nesting); CNI verbs get a dict.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing`'s: the shim does not import typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

MAGIC = b"VHP2"
MAX_REQUEST = 4 * 1024 * 1024  # environment + netconf; a GC of a busy node (3,000 attachments) is ~0.3 MiB
MAX_REPLY = 16 * 1024 * 1024
MAX_DEPTH = 64  # JSON nesting; vhostplug's own netconfs nest 4 deep, IPAM configs a few more
# the CNI spec's codes this module answers with (vhostplug.cni.spec has them all; the shim cannot import it)
CODE_INVALID_ENV = 4
CODE_DECODE_FAILURE = 6
CODE_INVALID_CONFIG = 7


class WireError(Exception):
    """A request that cannot be decoded: reported as the CNI error ``code`` / ``msg`` / ``details``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def too_large(size: int) -> WireError:
    return WireError(
        CODE_INVALID_CONFIG,
        f"the CNI request is {size} bytes; vhostplug accepts at most {MAX_REQUEST} (4 MiB)",
        "network configuration plus CNI_* environment",
    )


def encode_request(env: dict[bytes, bytes], stdin: bytes) -> bytes:
    """The request for the agent: the ``CNI_*`` variables and the netconf exactly as the runtime gave them."""
    env_block = b"\0".join(k + b"=" + v for k, v in env.items() if k.startswith(b"CNI_"))
    return b"%s %d\n%s%s" % (MAGIC, len(env_block), env_block, stdin)


def decode_request(data: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """``(env, netconf)`` of one request; :class:`WireError` when it is not a well-formed one."""
    if len(data) > MAX_REQUEST:
        raise too_large(len(data))
    head, sep, rest = data.partition(b"\n")
    magic, _, size_text = head.partition(b" ")
    if not sep or magic != MAGIC or not size_text.isdigit() or int(size_text) > len(rest):
        raise WireError(
            CODE_DECODE_FAILURE, "malformed request from the CNI shim (is the shim from this agent's release?)"
        )
    size = int(size_text)
    env: dict[str, str] = {}
    for entry in rest[:size].split(b"\0") if size else ():
        key, eq, value = entry.partition(b"=")
        if not eq or not key:
            raise WireError(CODE_DECODE_FAILURE, "malformed environment entry from the CNI shim")
        try:
            env[key.decode("ascii")] = value.decode("utf-8")
        except UnicodeDecodeError:
            name = key.decode("ascii", "backslashreplace")
            raise WireError(CODE_INVALID_ENV, f"{name} is not valid UTF-8", repr(value[:64])) from None
    try:
        return env, decode_netconf(rest[size:])
    except WireError:
        if env.get("CNI_COMMAND") == "DEL":  # DEL works from what ADD stored: a broken config must not strand a pod
            return env, {}
        raise


def decode_netconf(body: bytes) -> dict[str, Any]:
    """The netconf as a dict: UTF-8, one JSON object, nested at most :data:`MAX_DEPTH` deep."""
    import json  # agent side only (the shim never calls this)

    if not body.strip():
        raise WireError(CODE_DECODE_FAILURE, "no network configuration on stdin")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(CODE_DECODE_FAILURE, "network configuration on stdin is not UTF-8", str(exc)) from None
    too_deep = WireError(CODE_DECODE_FAILURE, f"network configuration is nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        raise WireError(CODE_DECODE_FAILURE, "network configuration is not valid JSON", str(exc)) from None
    if not isinstance(data, dict):
        raise WireError(CODE_DECODE_FAILURE, "network configuration must be a JSON object")
    if depth(data) > MAX_DEPTH:
        raise too_deep
    return data


def depth(value: object) -> int:
    """How deep JSON containers nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def encode_reply(code: int, agent_ms: float, stdout: str) -> bytes:
    return b"%d %.3f\n%s" % (code, agent_ms, stdout.encode("utf-8", "surrogateescape"))


def decode_reply(reply: bytes) -> tuple[int, bytes, bytes] | None:
    """``(exit code, agent-ms, stdout)`` of an answer; None when it is not one."""
    head, _, out = reply.partition(b"\n")
    code_text, _, agent_ms = head.partition(b" ")
    if not code_text.isdigit():
        return None
    return int(code_text), agent_ms, out
