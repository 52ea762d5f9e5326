"""Where the test suite's time goes: per folder and per test, from a pytest JUnit XML report.

Run the suite with a report, then read it::

    PYTEST_ADDOPTS="--junitxml=/tmp/suite.xml" nice -n 5 bash .ci/run
    .venv/bin/python bench/suite_times.py /tmp/suite.xml --label after --load "8.9 10.9 12.4"

Prints the markdown table docs/benchmarks.md keeps ("Where the test suite's time goes") and writes the figures as
JSON to bench/results/suite_times-<label>.json. A test's time is its setup + call + teardown (pytest's JUnit
default), so a session fixture's start and stop count for the test that first or last used it. Folders are
``tests/unit``, ``tests/fuzz``, ``tests/e2e`` and each folder below ``tests/functional`` and ``tests/runtime``: a
new suite gets its own row by living in its own folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SPLIT = ("functional", "runtime")  # folders whose subfolders get rows of their own


def folder_of(classname: str) -> str:
    """``tests.functional.cni.test_cni_verbs`` -> ``tests/functional/cni``; ``tests.unit.cni.test_x`` ->
    ``tests/unit``; ``tests.runtime.test_image`` -> ``tests/runtime``."""
    parts = classname.split(".")
    if len(parts) >= 4 and parts[1] in SPLIT:
        return "/".join(parts[:3])
    return "/".join(parts[:2])


def read(report: Path) -> dict[str, Any]:
    folders: dict[str, dict[str, float]] = defaultdict(lambda: {"tests": 0, "seconds": 0.0})
    tests: list[tuple[float, str]] = []
    root = ET.parse(report).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None, f"{report}: no <testsuite>"
    for case in suite.iter("testcase"):
        seconds = float(case.get("time", 0))
        cls = case.get("classname", "")
        f = folders[folder_of(cls)]
        f["tests"] += 1
        f["seconds"] += seconds
        tests.append((seconds, f"{cls.replace('.', '/')}.py::{case.get('name')}"))
    total = sum(f["seconds"] for f in folders.values())
    return {
        "wall_seconds": float(suite.get("time", 0)),
        "tests": sum(int(f["tests"]) for f in folders.values()),
        "failures": int(suite.get("failures", 0)) + int(suite.get("errors", 0)),
        "sum_of_tests_seconds": round(total, 1),
        "folders": {
            k: {"tests": int(v["tests"]), "seconds": round(v["seconds"], 1), "share": round(v["seconds"] / total, 3)}
            for k, v in sorted(folders.items(), key=lambda kv: -kv[1]["seconds"])
        },
        "top_tests": [{"seconds": round(s, 1), "test": t} for s, t in sorted(tests, reverse=True)[:15]],
    }


def markdown(data: dict[str, Any]) -> str:
    lines = ["| folder | tests | seconds | share |", "|---|---:|---:|---:|"]
    for name, f in data["folders"].items():
        lines.append(f"| {name} | {f['tests']} | {f['seconds']:.0f} | {100 * f['share']:.0f} % |")
    lines.append(f"| **all** | {data['tests']} | {data['sum_of_tests_seconds']:.0f} | wall {data['wall_seconds']:.0f} s |")
    lines += ["", "| seconds | test (setup + call + teardown) |", "|---:|---|"]
    lines += [f"| {t['seconds']:.0f} | `{t['test']}` |" for t in data["top_tests"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", type=Path, help="pytest --junitxml output")
    ap.add_argument("--label", default="run", help="names the JSON file (before, after, ...)")
    ap.add_argument("--load", default="", help="load averages while the suite ran (e.g. from /proc/loadavg)")
    args = ap.parse_args()
    data = read(args.report)
    data.update(
        label=args.label,
        load=args.load,
        report_mtime_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.report.stat().st_mtime)),
        cores=len(os.sched_getaffinity(0)),
        machine=platform.node(),
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"suite_times-{args.label}.json").write_text(json.dumps(data, indent=1) + "\n")
    print(markdown(data))


if __name__ == "__main__":
    main()
