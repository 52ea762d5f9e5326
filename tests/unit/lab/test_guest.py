"""Which kernel the lab guest boots: the uncompressed ELF (PVH entry) when build-guest.sh could make one."""

from __future__ import annotations

from pathlib import Path

import pytest

from vhostplug.lab.vms import Guest, LabVmError


def test_the_uncompressed_kernel_is_preferred(tmp_path: Path) -> None:
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"x")
    assert Guest.find(tmp_path).kernel == tmp_path / "vmlinuz"
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")
    assert Guest.find(tmp_path) == Guest(tmp_path / "vmlinux", tmp_path / "initrd.img")


def test_no_guest_says_how_to_build_one(tmp_path: Path) -> None:
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")  # a kernel alone is no guest
    with pytest.raises(LabVmError, match=r"build-guest\.sh"):
        Guest.find(tmp_path)
