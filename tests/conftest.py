"""Shared fixtures: a session-scoped private OVS-DPDK, short unique folders, and loud root checks (never skips)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vhostplug.lab.ovs import PrivateOvs

REPO = Path(__file__).resolve().parent.parent


def require_root() -> None:
    """Fail (not skip) when the test needs root: CI runs as root, so a skip would hide a broken setup."""
    if os.geteuid() != 0:
        pytest.fail(
            "this test needs root (network namespaces, mounts, OVS-DPDK); run `make test` as root", pytrace=False
        )


@pytest.fixture(scope="session")
def private_ovs() -> Iterator[PrivateOvs]:
    """A running private OVS-DPDK (no hugepages, one PMD core) for the whole test session."""
    require_root()
    run_dir = Path(tempfile.mkdtemp(prefix="vhp-ovs-", dir="/tmp"))
    ovs = PrivateOvs(run_dir)
    ovs.start()
    try:
        yield ovs
    finally:
        ovs.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short folder under /tmp (unix socket paths must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="vhp-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
