"""python-ovs's JSON-RPC parser on the standard library's C decoder.

python-ovs reads OVSDB's JSON-RPC stream through ``ovs.json.Parser``, which is a C extension only when python-ovs was
built against libopenvswitch; the wheel on PyPI is not, and then every byte from ovsdb-server goes through a
character-at-a-time lexer in Python. That was half of the agent's CPU per CNI ADD (the monitor updates that each new
port brings: our row, then ovs-vswitchd's ofport, status, statistics). :class:`StdlibParser` keeps python-ovs's
interface (``feed`` returns how much of the text it consumed, ``is_done``, ``finish`` returns the value or an error
string) and decodes with :mod:`json`; :func:`install` makes python-ovs use it when its C parser is missing.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: an OVSDB JSON-RPC message is an object; one ends where the buffer ends with ``}`` or the next one starts (``}{``)
_BOUNDARY = re.compile(r"}\s*{")
#: more than this without a complete message: the peer does not speak JSON (python-ovs's own parser has no limit)
MAX_MESSAGE = 256 * 1024 * 1024

_decoder = json.JSONDecoder()


class StdlibParser:
    """One JSON value from a stream fed in pieces (python-ovs's ``ovs.json.Parser`` interface)."""

    def __init__(self, check_trailer: bool = False) -> None:
        self.check_trailer = check_trailer  # True: the whole input is one value (``from_string``)
        self._held: list[str] = []
        self._size = 0
        self._value: Any = None
        self._error: str | None = None
        self.done = False

    def feed(self, s: str) -> int:
        """Take ``s``; return how many of its characters belong to the value (the rest is the next message's)."""
        if self.done:
            return 0
        before = self._size
        self._held.append(s)
        self._size += len(s)
        if self.check_trailer:
            return len(s)
        if s.rstrip().endswith("}") or _BOUNDARY.search(s):  # a message may end here: try to decode
            text = "".join(self._held)
            self._held = [text]
            try:
                self._value, end = _decoder.raw_decode(text, len(text) - len(text.lstrip()))
            except json.JSONDecodeError:
                pass  # not complete yet
            except RecursionError:
                self._fail("JSON nested too deeply")
                return len(s)
            else:
                self.done = True
                return end - before
        if self._size > MAX_MESSAGE:
            self._fail(f"no complete JSON message in {self._size} bytes")
        return len(s)

    def _fail(self, why: str) -> None:
        self._error, self.done = why, True

    def is_done(self) -> bool:
        return self.done

    def finish(self) -> Any:
        """The value, or an error message (a ``str``, as python-ovs's parser gives it)."""
        if self._error is not None:
            return self._error
        if self.check_trailer:
            try:
                return json.loads("".join(self._held))
            except (ValueError, RecursionError) as exc:
                return f"invalid JSON: {exc}"
        if not self.done:
            return "unexpected end of input"
        return self._value


def install() -> bool:
    """Let python-ovs parse with :class:`StdlibParser` unless it has its own C parser; True when installed."""
    import ovs.json

    if ovs.json.PARSER == ovs.json.PARSER_C:
        return False
    ovs.json.Parser = StdlibParser
    return True
