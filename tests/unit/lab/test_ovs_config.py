"""The lab OVS's configuration read from the environment: the idle PMD's sleep."""

from __future__ import annotations

import pytest

from vhostplug.lab.ovs import PMD_MAXSLEEP_ENV, OvsConfig, PrivateOvs


@pytest.mark.parametrize("raw,expected", [("", 0), ("0", 0), ("1000", 1000), (" 10000 ", 10000)])
def test_pmd_maxsleep_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, raw: str, expected: int
) -> None:
    monkeypatch.setenv(PMD_MAXSLEEP_ENV, raw)
    config = OvsConfig()
    assert config.pmd_maxsleep_us == expected
    other = PrivateOvs(tmp_path, config)._dpdk_other_config()  # type: ignore[arg-type]
    assert other.get("pmd-maxsleep") == (str(expected) if expected else None)


@pytest.mark.parametrize("raw", ["-1", "1ms", "10001", "0x10"])
def test_a_bad_pmd_maxsleep_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(PMD_MAXSLEEP_ENV, raw)
    with pytest.raises(ValueError, match=PMD_MAXSLEEP_ENV):
        OvsConfig()


def test_unset_means_a_pmd_that_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PMD_MAXSLEEP_ENV, raising=False)
    assert OvsConfig().pmd_maxsleep_us == 0
