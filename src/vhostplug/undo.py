"""An undo list: each side effect pushes how to take itself back; a failure runs them newest first (the CNI verbs
and the vDPA attach steps share it)."""

from __future__ import annotations

import logging
from collections.abc import Callable

Undo = list[Callable[[], object]]


def roll_back(undo: Undo, log: logging.Logger, what: str = "rollback") -> None:
    """Run every step, newest first, logging (not raising) a step that fails so the older ones still run."""
    for step in reversed(undo):
        try:
            step()
        except Exception:  # keep rolling back
            log.exception("%s step failed", what)
