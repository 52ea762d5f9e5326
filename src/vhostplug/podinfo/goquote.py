"""Go ``strconv.Unquote`` for double-quoted strings, and the kubelet downward API annotations file format.

The kubelet writes a pod's annotations into a downward API volume as ``key="value"`` lines, sorted by key, each value
quoted by Go's ``strconv.Quote``: printable runes stay as they are, ``"`` and ``\\`` are escaped, control characters
become ``\\a \\b \\f \\n \\r \\t \\v``, ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, and invalid UTF-8 bytes ``\\xNN``.
This module reverses that exactly (``\\xNN`` and octal escapes are raw bytes, as in Go). Standard library only.
"""

from __future__ import annotations

_SIMPLE = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
}  # \' is valid only in Go rune literals, not in double-quoted strings
_HEX = frozenset("0123456789abcdefABCDEF")


class GoQuoteError(ValueError):
    """A string is not a valid Go double-quoted literal."""


def unquote_prefix(text: str, start: int = 0) -> tuple[str, int]:
    """Decode the Go double-quoted literal that begins at ``text[start]``; return it and the index after it."""
    if start >= len(text) or text[start] != '"':
        raise GoQuoteError(f"expected '\"' at offset {start}")
    out = bytearray()
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return _decode(bytes(out)), i + 1
        if ch == "\n":
            raise GoQuoteError(f"unescaped newline inside a quoted string at offset {i}")
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= n:
            break
        esc = text[i + 1]
        if esc in _SIMPLE:
            out += _SIMPLE[esc]
            i += 2
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX:
                raise GoQuoteError(f"bad \\{esc} escape at offset {i}: {text[i : i + 2 + width]!r}")
            value = int(digits, 16)
            if esc == "x":
                out.append(value)
            else:
                if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                    raise GoQuoteError(f"\\{esc}{digits} at offset {i} is not a valid Unicode code point")
                out += chr(value).encode("utf-8")
            i += 2 + width
        elif esc in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or int(digits, 8) > 255:
                raise GoQuoteError(f"bad octal escape at offset {i}: {text[i : i + 4]!r}")
            out.append(int(digits, 8))
            i += 4
        else:
            raise GoQuoteError(f"unknown escape \\{esc} at offset {i}")
    raise GoQuoteError("unterminated quoted string")


def _decode(raw: bytes) -> str:
    # Go strings are bytes; invalid UTF-8 survives as lone surrogates so nothing is silently lost.
    return raw.decode("utf-8", "surrogateescape")


def unquote(text: str) -> str:
    """Decode a whole Go double-quoted literal; anything after the closing quote is an error."""
    value, end = unquote_prefix(text, 0)
    if end != len(text):
        raise GoQuoteError(f"unexpected text after the closing quote: {text[end:]!r}")
    return value


def parse_annotations(text: str) -> dict[str, str]:
    """Parse a downward API annotations (or labels) file: one ``key="go-quoted value"`` per line.

    The key ends at the first ``=`` (annotation keys cannot hold one); the value may hold any character, ``=``
    included, because it is quoted. Blank lines are ignored; any other malformed line raises :class:`GoQuoteError`.
    """
    result: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition("=")
        if not sep or not key:
            raise GoQuoteError(f'line {lineno}: expected key="value", got {line[:60]!r}')
        try:
            result[key] = unquote(rest.rstrip("\r"))
        except GoQuoteError as exc:
            raise GoQuoteError(f"line {lineno} ({key}): {exc}") from None
    return result


def quote(value: str) -> str:
    """Go ``strconv.Quote`` (for tests and fixtures): the exact inverse of :func:`unquote` for valid UTF-8."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\v":
            out.append("\\v")
        elif 0xDC80 <= code <= 0xDCFF:  # a surrogate-escaped invalid byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
