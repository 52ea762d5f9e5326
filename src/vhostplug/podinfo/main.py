"""Entry point of `vhostplug podinfo` (standard library only)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("podinfo: not implemented yet", file=sys.stderr)
    return 2
