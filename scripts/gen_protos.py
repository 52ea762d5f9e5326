#!/usr/bin/env python3
"""Generate the Python stubs of every proto/**/*.proto into src/ (paths under proto/ mirror the package tree: the
product's APIs under vhostplug/, the CRI v1 subset the containerd test harness speaks under vhostplug_testsupport/).

`--check` regenerates into a temporary folder and exits 1 when any committed stub differs (run by the unit tests).
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
SRC = ROOT / "src"


def generate(out: Path) -> list[Path]:
    protos = sorted(PROTO.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    for p in protos:
        args = [
            "protoc",
            f"-I{PROTO}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(p.relative_to(PROTO)),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed for {p}")
    generated = []
    for p in protos:
        stem = p.relative_to(PROTO).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            generated.append(stem.parent / (stem.name + suffix))
    return generated


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            files = generate(Path(tmp))
            stale = [
                str(f)
                for f in files
                if not (SRC / f).exists() or not filecmp.cmp(Path(tmp) / f, SRC / f, shallow=False)
            ]
        if stale:
            print("stale generated stubs (run `make protos`):\n  " + "\n  ".join(stale))
            return 1
        print(f"{len(files)} generated stubs match their .proto files")
        return 0
    import os

    os.chdir(ROOT)
    for f in generate(SRC):
        print(f"wrote src/{f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
