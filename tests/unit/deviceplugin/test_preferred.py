"""GetPreferredAllocation's choice: must_include first, then the same NUMA node, else first-free order."""

from __future__ import annotations

from vhostplug.deviceplugin.server import preferred


def test_first_free_without_topology() -> None:
    assert preferred(["a", "b", "c"], [], 2, {}) == ["a", "b"]


def test_must_include_kept_and_filled_from_same_numa() -> None:
    numa: dict[str, int | None] = {"a": 0, "b": 1, "c": 0, "d": 1}
    assert preferred(["a", "b", "c", "d"], ["d"], 2, numa) == ["d", "b"]
    assert preferred(["a", "b", "c", "d"], ["c"], 3, numa) == ["c", "a", "b"]


def test_numa_with_most_free_devices_wins_without_must_include() -> None:
    numa: dict[str, int | None] = {"a": 0, "b": 1, "c": 1, "d": 1}
    assert preferred(["a", "b", "c", "d"], [], 2, numa) == ["b", "c"]


def test_size_smaller_than_must_include() -> None:
    assert preferred(["a", "b"], ["b", "a"], 1, {}) == ["b"]
