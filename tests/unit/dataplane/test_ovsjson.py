"""StdlibParser gives python-ovs's JSON-RPC reader the same messages its own parser does, however the stream is cut."""

from __future__ import annotations

import json

import ovs.json
from hypothesis import given
from hypothesis import strategies as st

from vhostplug.dataplane import ovsjson
from vhostplug.dataplane.ovsjson import StdlibParser

MESSAGES = [
    {"id": 1, "result": [{"uuid": ["uuid", "1a2b"]}], "error": None},
    {"method": "update2", "params": [None, {"Interface": {"u": {"modify": {"ofport": 3, "name": "a}{b"}}}}], "id": None},
    {"id": "echo", "result": [], "error": None},
    {"method": "update2", "params": [None, {"Port": {"p": {"insert": {"tag": ["set", []], "x": 1.5}}}}], "id": None},
]


def read_all(stream: str, cuts: list[int]) -> list[object]:
    """python-ovs's Connection.recv loop: feed what arrived, slice off what the parser consumed, new parser per
    message."""
    pieces, last = [], 0
    for cut in [*sorted({c for c in cuts if 0 < c < len(stream)}), len(stream)]:
        pieces.append(stream[last:cut])
        last = cut
    out: list[object] = []
    parser: StdlibParser | None = None
    pending = ""
    for piece in pieces:
        pending += piece
        while pending:
            if parser is None:
                parser = StdlibParser()
            pending = pending[parser.feed(pending) :]
            if parser.is_done():
                out.append(parser.finish())
                parser = None
            else:
                break
    assert parser is None, "a message was left half-read"
    return out


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=12), st.sampled_from(["", " ", "\n"]))
def test_any_cut_of_the_stream_gives_the_same_messages(cuts: list[int], sep: str) -> None:
    stream = sep.join(json.dumps(m, separators=(",", ":")) for m in MESSAGES)
    assert read_all(stream, cuts) == MESSAGES


def test_whole_input_mode_and_errors() -> None:
    whole = StdlibParser(check_trailer=True)
    text = json.dumps(MESSAGES[1])
    assert whole.feed(text[:10]) == 10 and whole.feed(text[10:]) == len(text) - 10
    assert whole.finish() == MESSAGES[1]
    bad = StdlibParser(check_trailer=True)
    bad.feed('{"a": ')
    assert isinstance(bad.finish(), str)  # an error is a string, as python-ovs's parser gives it
    part = StdlibParser()
    part.feed('{"a": [1, 2}')
    assert not part.is_done() and part.finish() == "unexpected end of input"


def test_installed_for_python_ovs_without_its_c_parser() -> None:
    if ovs.json.PARSER == ovs.json.PARSER_C:
        assert ovsjson.install() is False
        return
    ovsjson.install()
    assert ovs.json.Parser is StdlibParser
    assert ovs.json.from_string('{"x": [1, "y"]}') == {"x": [1, "y"]}
