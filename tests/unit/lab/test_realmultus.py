"""Where the real Multus binary is looked for: $VHOSTPLUG_MULTUS (a path, or `none` on purpose), else
shared/peers/multus beside the repository or beside its parent; anything else fails naming where it looked."""

from __future__ import annotations

from pathlib import Path

import pytest

from vhostplug.lab import realmultus


def _binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_env_none_says_no_binary_on_purpose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(realmultus.ENV, "none")
    assert realmultus.locate(tmp_path / "repo") is None


def test_env_path_must_be_an_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(realmultus.ENV, str(tmp_path / "nope"))
    with pytest.raises(realmultus.MultusMissing, match="is not an executable file"):
        realmultus.locate(tmp_path / "repo")
    exe = _binary(tmp_path / "bin" / "multus")
    monkeypatch.setenv(realmultus.ENV, str(exe))
    assert realmultus.locate(tmp_path / "repo") == exe


def test_beside_the_repository_or_its_parent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(realmultus.ENV, raising=False)
    repo = tmp_path / "wt" / "repo"
    with pytest.raises(realmultus.MultusMissing) as err:
        realmultus.locate(repo)
    assert str(tmp_path / "wt" / "shared/peers/multus") in str(err.value) and "VHOSTPLUG_MULTUS=none" in str(err.value)
    outer = _binary(tmp_path / "shared/peers/multus")  # a worktree's layout: beside the parent
    assert realmultus.locate(repo) == outer
    inner = _binary(tmp_path / "wt" / "shared/peers/multus")  # the CI clone's: beside the repository, first
    assert realmultus.locate(repo) == inner
