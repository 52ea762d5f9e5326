"""Fixtures of the KubeVirt functional tests: a libvirtd started by hand (stopped again only if we started it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_root
from vhostplug.lab.vms import Libvirt


@pytest.fixture(scope="session")
def libvirt() -> Iterator[Libvirt]:
    require_root()
    lv = Libvirt()
    try:
        lv.start()
        yield lv
    finally:
        lv.stop()
