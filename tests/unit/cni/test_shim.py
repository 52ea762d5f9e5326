"""The shim is standard library only and runs under `python3 -I -S`: checked by its imports and by really exec'ing
the installed file with VERSION and with no agent."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from vhostplug.cni import shim
from vhostplug.cni.install import install_shim

STDLIB_OK = {"__future__", "json", "os", "socket", "sys", "time", "errno", "select", "struct", "typing"}


def test_shim_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(shim.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= STDLIB_OK, names - STDLIB_OK
    assert names <= set(sys.stdlib_module_names) | {"__future__"}


def test_installed_shim_runs_isolated(short_dir: Path) -> None:
    exe = install_shim(short_dir)
    first = exe.read_text().splitlines()[0]
    assert first.startswith("#!/") and first.endswith(" -IS")
    assert exe.stat().st_mode & 0o111
    env = {"CNI_COMMAND": "VERSION"}
    out = subprocess.run([str(exe)], input=b'{"cniVersion": "0.4.0"}', env=env, capture_output=True, check=True)
    assert json.loads(out.stdout) == {"cniVersion": "0.4.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}
    # VERSION with a config we do not support still answers with the latest
    out = subprocess.run([str(exe)], input=b"{}", env=env, capture_output=True, check=True)
    assert json.loads(out.stdout)["cniVersion"] == "1.1.0"


def test_unknown_command_and_missing_agent(short_dir: Path) -> None:
    exe = install_shim(short_dir)
    bad = subprocess.run([str(exe)], input=b"{}", env={"CNI_COMMAND": "FROB"}, capture_output=True)
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 4
    conf = json.dumps({"cniVersion": "1.0.0", "agentSocket": str(short_dir / "none.sock")}).encode()
    gone = subprocess.run([str(exe)], input=conf, env={"CNI_COMMAND": "STATUS"}, capture_output=True, timeout=30)
    err = json.loads(gone.stdout)
    assert gone.returncode == 1 and err["code"] == 11 and err["cniVersion"] == "1.0.0"
    assert "not reachable" in err["msg"]
