"""Install the CNI shim for runtimes: this package's stdlib-only shim.py, copied as one executable file whose
shebang runs a system Python with ``-I -S`` (isolated, no site-packages: nothing but the standard library).

Before writing anything the installer checks, on the node, the interpreter it is about to put into the shebang: it
exists, is executable, and runs as Python >= 3.9. From the DaemonSet's init container the node's root filesystem is
mounted read-only at ``host_root`` (e.g. ``/host``); the interpreter is then run *inside* that root (``chroot``, the
same view kubelet's exec of the shim will have), so its own libraries and standard library are the ones used, not the
container's. A node that lacks a suitable interpreter gets a message naming what is missing and the ``--python`` to
choose instead; nothing is written then (an existing shim stays as it was)."""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath

SHIM_SOURCE = Path(__file__).with_name("shim.py")
#: The shim uses nothing newer than Python 3.9 (it runs on the node's own interpreter, not on ours).
MIN_PYTHON = (3, 9)
_PROBE = "import sys; print('%d.%d.%d' % tuple(sys.version_info[:3]))"
_MAX_LINKS = 40
WIRE_SOURCE = Path(__file__).with_name("wire.py")
WIRE_IMPORT = "from vhostplug.cni.wire import "


def shim_source() -> str:
    """shim.py made self-contained: its one import of :mod:`vhostplug.cni.wire` replaced by the parts of that module
    the shim uses (its constants, its exception class and the imported functions; the agent-side decoders are left
    out: the installed file is compiled on every exec). The installed shim runs with ``-I -S`` and cannot import
    the package."""
    lines = SHIM_SOURCE.read_text().split("\n")
    at = [i for i, line in enumerate(lines) if line.startswith(WIRE_IMPORT)]
    if len(at) != 1:
        raise RuntimeError(f"{SHIM_SOURCE} must import {WIRE_IMPORT}... on exactly one line")
    imported = ast.parse(lines[at[0]]).body[0]
    assert isinstance(imported, ast.ImportFrom)
    wanted = {alias.name for alias in imported.names}
    text = WIRE_SOURCE.read_text()
    parts = []
    for node in ast.parse(text).body:
        keep = isinstance(node, (ast.Assign, ast.AnnAssign, ast.ClassDef)) or (
            isinstance(node, ast.FunctionDef) and node.name in wanted
        )
        if keep:
            parts.append(ast.get_source_segment(text, node) or "")
    return "\n".join([*lines[: at[0]], "\n\n".join(parts), *lines[at[0] + 1 :]])


class InterpreterError(Exception):
    """The node's interpreter for the shim's shebang is missing, not executable or too old; the message says how to
    fix it."""


def default_python(host_root: Path = Path("/")) -> str:
    """The node's python3 (looked up under ``host_root``); on the installer's own machine, its own interpreter as
    the last resort."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(resolve_under(host_root, candidate), os.X_OK):
            return candidate
    return sys.executable if host_root == Path("/") else "/usr/bin/python3"  # the check then says what is missing


def resolve_under(root: Path, path: str) -> Path:
    """``path`` as the node sees it, resolved inside ``root`` (symlinks included, absolute ones restarting at
    ``root``, never leaving it). Returns the final path under ``root``; it may not exist."""
    parts = list(PurePosixPath(path).parts[1:])
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > _MAX_LINKS:
                raise InterpreterError(f"{path}: too many levels of symbolic links under {root}")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _fix_hint(python: str) -> str:
    return (
        f"install Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} on the node as {python}, or point the installer at one "
        "the node has with `vhostplug install-cni --python /path/on/the/node/python3` (in deploy/node: the "
        "install-cni init container's --python argument)"
    )


def check_interpreter(python: str, host_root: Path = Path("/")) -> tuple[int, int, int]:
    """Check that ``python`` (a path on the node) exists under ``host_root``, is executable and runs as
    Python >= MIN_PYTHON with ``-I -S``; return its version or raise :class:`InterpreterError`."""
    where = "on this node" if host_root == Path("/") else f"on the node, looked under the host mount {host_root}"
    if not python.startswith("/"):
        raise InterpreterError(f"--python {python!r} must be an absolute path: kubelet runs the shim without a PATH")
    found = resolve_under(host_root, python)
    try:
        st = found.stat()
    except OSError:
        raise InterpreterError(f"the node has no {python} ({where}): {_fix_hint(python)}") from None
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise InterpreterError(f"{python} ({where}) is not an executable file: {_fix_hint(python)}")
    root = str(host_root)

    def enter_root() -> None:  # runs in the child between fork and exec
        os.chroot(root)
        os.chdir("/")

    try:
        proc = subprocess.run(
            [python, "-IS", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
            preexec_fn=None if host_root == Path("/") else enter_root,  # the installer is single-threaded
            cwd="/",
        )
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"{python} ({where}) did not answer within 20 s: {_fix_hint(python)}") from None
    except subprocess.SubprocessError as exc:  # the chroot itself failed
        raise InterpreterError(
            f"cannot enter the host mount {host_root} to run {python} ({exc}): the install-cni container needs "
            "root with CAP_SYS_CHROOT and the node's / mounted at --host-root"
        ) from None
    except OSError as exc:  # exec failed: a script whose own interpreter is missing, a foreign binary, ...
        raise InterpreterError(f"{python} ({where}) cannot be run: {exc.strerror}: {_fix_hint(python)}") from None
    out = proc.stdout.strip()
    try:
        version = tuple(int(p) for p in out.split("."))
        if proc.returncode != 0 or len(version) != 3:
            raise ValueError(out)
    except ValueError:
        said = (proc.stderr.strip() or out or f"exit status {proc.returncode}").splitlines()[0]
        raise InterpreterError(
            f"{python} ({where}) does not run as Python 3 with -IS ({said}): {_fix_hint(python)}"
        ) from None
    major, minor, micro = version
    if (major, minor) < MIN_PYTHON:
        raise InterpreterError(
            f"{python} ({where}) is Python {major}.{minor}.{micro}; the shim needs Python >= "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}: {_fix_hint(python)}"
        )
    return major, minor, micro


def install_shim(
    dest_dir: Path, name: str = "vhostplug", python: str | None = None, host_root: Path = Path("/")
) -> Path:
    """Check the interpreter on the node, then write ``dest_dir/name`` atomically (mode 0755) and return its path."""
    interpreter = python or default_python(host_root)
    check_interpreter(interpreter, host_root)
    dest_dir.mkdir(parents=True, exist_ok=True)
    body = shim_source().split("\n", 1)[1]  # drop the source's own shebang line
    target = dest_dir / name
    tmp = dest_dir / f".{name}.tmp"
    tmp.write_text(f"#!{interpreter} -IS\n{body}")  # one shebang argument: -I -S combined
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
