"""Shared fixtures: a session-scoped private OVS-DPDK, short unique folders, and loud root checks (never skips).

A test that only *uses* OVS (ports, bridges, traffic) takes the session's ``private_ovs`` and removes what it made;
a test that *breaks* OVS (stops, kills or SIGSTOPs its daemons) starts one of its own with :func:`own_private_ovs`,
module-scoped where its tests can share it (see docs/benchmarks.md, "Where the test suite's time goes").
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings

from vhostplug.lab.ovs import PMD_MAXSLEEP_ENV, PrivateOvs

REPO = Path(__file__).resolve().parent.parent

# Every private OVS-DPDK of the session (the fixtures' and the labs the tests start, which inherit the environment)
# lets its idle PMD sleep up to 1 ms: a PMD polls its core flat out whenever a port exists, and on this 2-core machine
# that left the suite one core. Under traffic a PMD does not sleep, so rates and counts are judged as before.
os.environ.setdefault(PMD_MAXSLEEP_ENV, "1000")

# Property tests judge what a case answers, not how fast: on this 2-core machine, shared with OVS's busy PMD and
# often with other work, one case can take 0.5 s, and hypothesis's default 200 ms deadline would fail it for that.
settings.register_profile("vhostplug", deadline=None)
settings.load_profile("vhostplug")


def require_root() -> None:
    """Fail (not skip) when the test needs root: CI runs as root, so a skip would hide a broken setup."""
    if os.geteuid() != 0:
        pytest.fail(
            "this test needs root (network namespaces, mounts, OVS-DPDK); run `make test` as root", pytrace=False
        )


@contextmanager
def own_private_ovs(prefix: str = "vhp-ovs-") -> Iterator[PrivateOvs]:
    """A running private OVS-DPDK (no hugepages, one PMD core) in a fresh /tmp folder, stopped and removed after;
    a SIGSTOPped ovsdb-server is continued first so that the stop cannot hang."""
    require_root()
    run_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    ovs = PrivateOvs(run_dir)
    try:
        ovs.start()
        yield ovs
    finally:
        ovs.signal_ovsdb(signal.SIGCONT)
        ovs.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def private_ovs() -> Iterator[PrivateOvs]:
    """The session's private OVS-DPDK, shared by every test that uses OVS without breaking it."""
    with own_private_ovs() as ovs:
        yield ovs


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


# -- markers (pyproject): given from the fixtures a test uses, so that they cannot drift from what it needs.
# `make check` runs `-m "not root"`: every test that needs neither root nor OVS nor libvirtd. A module whose tests
# need root through no fixture (netns, mounts, /opt/cni/bin) says `pytestmark = pytest.mark.root` itself.
OVS_FIXTURES = frozenset({"private_ovs", "own_ovs"})
LIBVIRT_FIXTURES = frozenset({"libvirt", "libvirt_uri"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & OVS_FIXTURES:
            item.add_marker(pytest.mark.ovs)
        if used & LIBVIRT_FIXTURES:
            item.add_marker(pytest.mark.libvirt)
        if item.get_closest_marker("ovs") or item.get_closest_marker("libvirt"):
            item.add_marker(pytest.mark.root)


# -- the project's image (tests/runtime/test_image.py) takes ~2 min to build in a fresh clone: when the session will
# use it, its build starts as soon as the tests are collected and runs beside them. The `image` fixture runs the same
# script, which waits for this build (a lock in build-image.sh) and finds the archive up to date; its own run is the
# one judged. A build still running when the session ends (a stop at the first failure) finishes on its own: killed
# half-way, mmdebstrap would leave its chroot's mounts.
_IMAGE_BUILD = pytest.StashKey[subprocess.Popen[bytes]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or session.config.option.collectonly:
        return
    if any("image" in getattr(item, "fixturenames", ()) for item in session.items):
        log = REPO / "build" / "image-early.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            session.config.stash[_IMAGE_BUILD] = subprocess.Popen(
                [str(REPO / "scripts" / "build-image.sh")],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not ended by a Ctrl-C of the session: it finishes and cleans up
            )


# -- the real-Multus suite (tests/runtime/multus): runs wherever the binary is. Left out (never counted as passed, and
# the summary says so plainly) when VHOSTPLUG_MULTUS=none, or when it is unset and no binary is where CI keeps it; a
# VHOSTPLUG_MULTUS naming a missing file fails the suite.
_MULTUS_SUITE = REPO / "tests" / "runtime" / "multus"


def _multus_left_out() -> str | None:
    """Why the real-Multus suite does not run here, or None when it does."""
    from vhostplug.lab import realmultus

    asked = os.environ.get(realmultus.ENV, "")
    if asked.lower() == "none":
        return f"{realmultus.ENV}=none"
    if asked:
        return None
    try:
        realmultus.locate()
    except realmultus.MultusMissing as exc:
        return str(exc)
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.is_relative_to(_MULTUS_SUITE) and _multus_left_out() is not None:
        return True
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if (why := _multus_left_out()) is not None:
        terminalreporter.write_line(
            f"NOTE: the real-Multus suite (tests/runtime/multus) did NOT run: {why}. Run it with "
            "VHOSTPLUG_MULTUS=<path of the Multus 4.0.x thin plugin> (or with shared/peers/multus beside the "
            "repository) and `make runtime`; see docs/cni.md.",
            yellow=True,
            bold=True,
        )
