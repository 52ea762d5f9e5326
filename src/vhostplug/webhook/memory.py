"""Handing the webhook's freed memory back to the OS (glibc), so its RSS follows what it holds now, not its peak.

Owns: :func:`fix_mmap_threshold` (called once at start: glibc raises its mmap threshold each time a large block is
freed, after which 256 kB TLS read buffers and multi-MB bodies come from the heap and stay there; a fixed 128 kB
threshold keeps them in their own mappings, unmapped when freed) and :func:`release_memory` (a collection, then
``malloc_trim``, after a large body or a burst of connections). No-ops where the C library has neither.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Any

#: glibc's mallopt parameter number for the mmap threshold, and the value we fix it at (its initial default)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    return _libc


def fix_mmap_threshold() -> bool:
    """Blocks of 128 kB and more are mapped on their own and unmapped when freed; True when glibc took it."""
    libc = _c()
    return bool(libc and hasattr(libc, "mallopt") and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


def release_memory() -> None:
    """Hand freed heap back to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    gc.collect()  # request objects may sit in reference cycles that hold the body
    libc = _c()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
