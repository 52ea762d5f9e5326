"""The fuzz suites' frame: one seed per run, printed in the header and with every failure, and a scale.

Reproduce a failing run with the ``VHOSTPLUG_FUZZ_SEED=<seed>`` printed in the report; run bigger with
``VHOSTPLUG_FUZZ_SCALE=<factor>`` (1 is the CI size, bounded in time). Tests take the ``fuzz_rng`` fixture (a
``random.Random`` seeded per test) or decorate hypothesis tests with :func:`fuzz_settings` (seeded, no database, no
deadline, ``cases(n)`` examples).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import hypothesis
import pytest

from vhostplug_testsupport import fuzz

F = TypeVar("F", bound=Callable[..., Any])


def fuzz_settings(n: int) -> Callable[[F], F]:
    """Seeded hypothesis settings for ``cases(n)`` examples (apply below @given)."""

    def wrap(fn: F) -> F:
        fn = hypothesis.seed(fuzz.seed_for(f"{fn.__module__}.{fn.__qualname__}"))(fn)
        return hypothesis.settings(
            max_examples=fuzz.cases(n),
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=(hypothesis.Phase.generate, hypothesis.Phase.shrink),
        )(fn)

    return wrap


def pytest_report_header(config: pytest.Config) -> str:
    return f"fuzz: seed {fuzz.SEED}, scale {fuzz.SCALE:g} (reproduce: {fuzz.reproduce_hint()})"


@pytest.fixture
def fuzz_rng(request: pytest.FixtureRequest) -> random.Random:
    return fuzz.rng_for(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("fuzz seed", f"reproduce with: {fuzz.reproduce_hint()} pytest '{item.nodeid}'"))
