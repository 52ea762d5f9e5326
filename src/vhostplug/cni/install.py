"""Install the CNI shim for runtimes: this package's stdlib-only shim.py, copied as one executable file whose
shebang runs a system Python with ``-I -S`` (isolated, no site-packages: nothing but the standard library)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

SHIM_SOURCE = Path(__file__).with_name("shim.py")


def default_python() -> str:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def install_shim(dest_dir: Path, name: str = "vhostplug", python: str | None = None) -> Path:
    """Write ``dest_dir/name`` atomically (mode 0755) and return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    body = SHIM_SOURCE.read_text().split("\n", 1)[1]  # drop the source's own shebang line
    target = dest_dir / name
    tmp = dest_dir / f".{name}.tmp"
    tmp.write_text(f"#!{python or default_python()} -IS\n{body}")  # one shebang argument: -I -S combined
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def copy_ipam_plugins(dest_dir: Path, plugins: tuple[str, ...] = ("host-local", "static")) -> list[Path]:
    """Make Debian's IPAM plugins available next to the shim (the lab's CNI_PATH holds one folder)."""
    out = []
    for name in plugins:
        src = Path("/usr/lib/cni") / name
        if src.exists():
            dst = dest_dir / name
            shutil.copy2(src, dst)
            out.append(dst)
    return out
