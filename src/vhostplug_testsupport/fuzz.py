"""Seeds, scale and output checks for the fuzz suites (tests/fuzz) and anything else that generates inputs.

One seed per run: ``VHOSTPLUG_FUZZ_SEED`` (decimal) reproduces a run; without it a fresh one is drawn and printed.
``VHOSTPLUG_FUZZ_SCALE`` multiplies every case count (1 = the CI size that fits the time budget; e.g. 20 nightly).
"""

from __future__ import annotations

import json
import os
import random
import time
import zlib
from typing import Any

SEED_ENV = "VHOSTPLUG_FUZZ_SEED"
SCALE_ENV = "VHOSTPLUG_FUZZ_SCALE"


def _seed_from_env() -> int:
    raw = os.environ.get(SEED_ENV, "").strip()
    if raw:
        return int(raw)
    return random.SystemRandom().randrange(1, 2**32)


SEED = _seed_from_env()
SCALE = float(os.environ.get(SCALE_ENV, "1") or "1")


def cases(n: int) -> int:
    """How many cases to run for a suite whose CI size is ``n``."""
    return max(1, int(n * SCALE))


def time_budget(seconds: float) -> float:
    """A ``time.monotonic()`` deadline of ``seconds`` (times the scale): suites that exec processes stop generating
    there, after their minimum count, so a slow host stays inside the CI time limit."""
    return time.monotonic() + seconds * SCALE


def seed_for(name: str) -> int:
    """A per-test seed derived from the run's seed and a stable name (the test's node id)."""
    return (SEED ^ zlib.crc32(name.encode())) & 0xFFFFFFFF


def rng_for(name: str) -> random.Random:
    return random.Random(seed_for(name))


def reproduce_hint() -> str:
    return f"{SEED_ENV}={SEED} {SCALE_ENV}={SCALE:g}"


def assert_no_traceback(text: str, where: str) -> None:
    """Fail when ``text`` (a stderr, a log) carries a Python traceback."""
    assert "Traceback (most recent call last)" not in text, f"traceback in {where}:\n{text[-3000:]}"


def assert_cni_output(code: int, stdout: bytes | str, where: str = "stdout") -> dict[str, Any] | None:
    """Check one plugin answer as a runtime reads it: exit 0 or 1; exit 1 carries the spec's error JSON (an integer
    ``code`` and a string ``msg``); exit 0 carries a result object or nothing (DEL/CHECK/STATUS/GC).
    Returns the decoded JSON (None for an empty success)."""
    text = stdout.decode("utf-8") if isinstance(stdout, bytes) else stdout
    assert code in (0, 1), f"exit code {code} (only 0 and 1 are allowed); {where}: {text[:500]!r}"
    if code == 0 and not text.strip():
        return None
    try:
        out = json.loads(text)
    except ValueError as exc:
        raise AssertionError(f"{where} is not JSON ({exc}): {text[:500]!r}") from None
    assert isinstance(out, dict), f"{where} is not a JSON object: {text[:500]!r}"
    if code == 1:
        assert isinstance(out.get("code"), int) and not isinstance(out["code"], bool), out
        assert isinstance(out.get("msg"), str) and out["msg"], out
        assert isinstance(out.get("cniVersion"), str), out
        assert set(out) <= {"cniVersion", "code", "msg", "details"}, out
    else:
        assert isinstance(out.get("cniVersion"), str), out
    return out
