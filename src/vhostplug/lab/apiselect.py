"""Label and field selectors as kube-apiserver parses them for LIST and WATCH.

Label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``, comma-joined (all
must hold). Field selectors: ``path=v``, ``path==v``, ``path!=v`` on dotted paths into the object (``spec.nodeName``),
comma-joined. A selector that does not parse raises :class:`SelectorError` (kube-apiserver answers 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    """A label or field selector that does not parse."""


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_SET = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_KEY = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, dict) else {}


def _label_term(term: str) -> Predicate:
    if m := _SET.match(term):
        key, values = m["key"], {v.strip() for v in m["values"].split(",") if v.strip()}
        if m["op"] == "in":
            return lambda o: _labels(o).get(key) in values
        return lambda o: _labels(o).get(key) not in values
    if m := _EQ.match(term):
        key, value = m["key"], m["value"]
        if m["op"] == "!=":
            return lambda o: _labels(o).get(key) != value
        return lambda o: _labels(o).get(key) == value
    if m := _KEY.match(term):
        key = m["key"]
        if m["neg"]:
            return lambda o: key not in _labels(o)
        return lambda o: key in _labels(o)
    raise SelectorError(f"unable to parse requirement: {term!r}")


def label_selector(text: str) -> Predicate:
    """A predicate for a label selector string; the empty selector matches everything."""
    terms = [_label_term(t) for t in _split(text)]
    return lambda obj: all(t(obj) for t in terms)


def field_value(obj: dict[str, Any], path: str) -> str:
    """The value at a dotted path as kube-apiserver compares it in a field selector (missing is the empty string)."""
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_paths(text: str) -> list[str]:
    """The field paths a field selector names (to check them against what a resource supports)."""
    out = []
    for term in _split(text):
        m = _EQ.match(term)
        if not m:
            raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
        out.append(m["key"])
    return out


def field_selector(text: str) -> Predicate:
    """A predicate for a field selector string; the empty selector matches everything."""
    terms: list[tuple[str, bool, str]] = []
    for term in _split(text):
        m = _EQ.match(term)
        if not m:
            raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
        terms.append((m["key"], m["op"] != "!=", m["value"]))
    return lambda obj: all((field_value(obj, k) == v) == eq for k, eq, v in terms)
