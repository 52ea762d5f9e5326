"""Go strconv.Unquote and the kubelet downward API annotations format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vhostplug.podinfo.goquote import GoQuoteError, parse_annotations, quote, unquote

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ('""', ""),
        ('"plain"', "plain"),
        (r'"a\"b"', 'a"b'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\a\b\f\n\r\t\v"', "\a\b\f\n\r\t\v"),
        (r'"\x41\x00"', "A\x00"),
        (r'"\u00e9\U0001F600"', "é😀"),
        ('"é😀"', "é😀"),
        (r'"\101\000"', "A\x00"),
        (r'"\xc3\xa9"', "é"),  # bytes that form valid UTF-8
        (r'"\xff"', "\udcff"),  # an invalid byte survives, surrogate-escaped
        (r'"k=v=w"', "k=v=w"),
    ],
)
def test_unquote(literal: str, expected: str) -> None:
    assert unquote(literal) == expected


@pytest.mark.parametrize(
    "bad",
    [
        '"unterminated',
        "noquote",
        r'"\q"',
        r'"\x4"',
        r'"\u12"',
        r'"\ud800"',
        r'"\400"',
        r'"\'"',
        '"a"b',
        '"new\nline"',
        '"end\\',
    ],
)
def test_unquote_rejects(bad: str) -> None:
    with pytest.raises(GoQuoteError):
        unquote(bad)


@given(st.text())
def test_quote_roundtrip(value: str) -> None:
    assert unquote(quote(value)) == value
    assert "\n" not in quote(value)


def test_fixture_annotations_file_parses_exactly() -> None:
    ann = parse_annotations((FIXTURES / "annotations").read_text())
    assert set(ann) == {
        "k8s.v1.cni.cncf.io/network-status",
        "k8s.v1.cni.cncf.io/networks",
        "kubernetes.io/config.seen",
        "kubernetes.io/config.source",
        "x.example.com/nasty",
        "x.example.com/empty",
    }
    assert ann["x.example.com/empty"] == ""
    assert ann["x.example.com/nasty"] == (
        'a=b==c "q" back\\slash\ttab\x00nul \x1b[0m\a\b\f\r\v café é 😀 😀 \u2028 \udcff\udcff end'
    )
    status = json.loads(ann["k8s.v1.cni.cncf.io/network-status"])
    assert [e["interface"] for e in status] == ["eth0", "net1", "net2", "net3", "net4"]
    assert status[2]["device-info"]["vhost-user"]["path"] == '/var/run/vhost=user/café "q"\\x.sock'
    assert json.loads(ann["k8s.v1.cni.cncf.io/networks"])[1] == {"name": "vhu-b", "interface": "net2"}


@pytest.mark.parametrize(
    "text",
    ["novalue\n", '=""\n', "k=unquoted\n", 'k="a" trailing\n', 'k="a\n'],
)
def test_parse_annotations_rejects_malformed_lines(text: str) -> None:
    with pytest.raises(GoQuoteError, match="line 1"):
        parse_annotations(text)


def test_parse_annotations_ignores_blank_lines_and_crlf() -> None:
    assert parse_annotations('a="1"\r\n\nb="x=\\"y\\""\n') == {"a": "1", "b": 'x="y"'}
