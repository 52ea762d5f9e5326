"""docs/architecture.md's "Where to change what" table names files that exist: a reader who follows a row lands in
a real file (templated names such as ``bench/<name>.py`` in a real folder), and each row names one file to edit."""

from __future__ import annotations

import re

from tests.conftest import REPO

DOC = REPO / "docs" / "architecture.md"


def _table() -> list[list[str]]:
    text = DOC.read_text()
    start = text.index("## Where to change what")
    end = text.find("\n## ", start + 1)
    rows = [line for line in text[start : end if end > 0 else None].splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return cells[1:]  # the header (the separator row starts with "|-", not "| ")


def _paths(cell: str) -> list[str]:
    return [p for p in re.findall(r"`([^`]+)`", cell) if "/" in p and " " not in p]


def test_the_table_has_the_rows_a_new_engineer_asks_for() -> None:
    firsts = " ".join(row[0] for row in _table())
    for topic in ("port type", "hook API version", "device kind", "CNI verb", "lab demo phase", "dataplane backend"):
        assert topic in firsts, topic


def test_every_path_in_the_table_exists() -> None:
    rows = _table()
    assert len(rows) >= 15
    checked = 0
    for row in rows:
        edit = _paths(row[1])
        assert edit, f"row {row[0]!r} names no file to edit"
        for path in edit + [p for cell in row[2:] for p in _paths(cell)]:
            # a templated name (`bench/<name>.py`) must sit in a real folder
            target = REPO / path if "<" not in path else REPO / path[: path.index("<")].rsplit("/", 1)[0]
            assert target.exists(), f"{path} (row {row[0]!r}) does not exist"
            checked += 1
    assert checked >= 30
