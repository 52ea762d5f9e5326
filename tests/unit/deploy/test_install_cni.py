"""`vhostplug install-cni --host-root R --python P` checks P on the node before writing the shim: against fake node
roots made of real files (a real python3 with its libraries and standard library copied in, none at all, a
non-executable one, one that reports Python 3.6, a Python-2-like one that rejects -I). The check runs the interpreter
chrooted into R, as kubelet will run the shim on the node, so the root needs the interpreter's own libraries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root
from vhostplug.cni.install import InterpreterError, check_interpreter, install_shim, resolve_under

VHOSTPLUG = str(Path(sys.executable).with_name("vhostplug"))
REAL_PYTHON = Path(os.path.realpath("/usr/bin/python3"))  # e.g. /usr/bin/python3.11
_SKIP_STDLIB = {"test", "__pycache__", "site-packages", "dist-packages", "idlelib", "tkinter", "lib2to3", "ensurepip"}


def _ask_real_python(*keys: str) -> list[str]:
    """sysconfig paths of the machine's python3 (not this venv's interpreter, which may be another build)."""
    code = f"import sysconfig; print('\\n'.join(sysconfig.get_paths()[k] for k in {keys!r}))"
    return subprocess.run(
        [str(REAL_PYTHON), "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()


def _copy_with_libraries(exe: Path, root: Path) -> None:
    """Copy ``exe`` and every shared library ldd names (and the loader) to the same paths under ``root``."""
    files = [exe]
    for line in subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            files.append(Path(m.group(1)))
    for f in files:
        dst = root / f.relative_to("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dst)


def _merged_usr(root: Path) -> None:
    for d in ("lib", "lib64", "bin"):
        (root / "usr" / d).mkdir(parents=True, exist_ok=True)
        if not (root / d).exists():
            os.symlink(f"usr/{d}", root / d)


@pytest.fixture(scope="module")
def node_with_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node root with the machine's real python3 copied in: /usr/bin/python3 -> /etc/alternatives/python3 (an
    absolute link, as Debian's alternatives make) -> /usr/bin/python3.X."""
    root = tmp_path_factory.mktemp("node-ok")
    _merged_usr(root)
    _copy_with_libraries(REAL_PYTHON, root)
    for stdlib in {Path(p) for p in _ask_real_python("stdlib", "platstdlib")}:
        shutil.copytree(
            stdlib,
            root / stdlib.relative_to("/"),
            ignore=lambda d, names: [n for n in names if n in _SKIP_STDLIB or n.startswith("config-")],
            dirs_exist_ok=True,
        )
    (root / "etc" / "alternatives").mkdir(parents=True)
    os.symlink(str(REAL_PYTHON), root / "etc" / "alternatives" / "python3")
    os.symlink("/etc/alternatives/python3", root / "usr" / "bin" / "python3")
    return root


def _node_with_script(root: Path, script: str, mode: int = 0o755) -> Path:
    """A node root whose /usr/bin/python3 is a shell script (with a real /bin/sh copied in)."""
    _merged_usr(root)
    _copy_with_libraries(Path(os.path.realpath("/bin/sh")), root)
    sh = root / "usr" / "bin" / "sh"
    if not sh.exists():
        os.symlink(Path(os.path.realpath("/bin/sh")).name, sh)
    py = root / "usr" / "bin" / "python3"
    py.write_text(script)
    py.chmod(mode)
    return root


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "opt-cni-bin"
    d.mkdir()
    yield d


def _install(dest: Path, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VHOSTPLUG, "install-cni", "--dest", str(dest), "--host-root", str(root), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.root
def test_node_with_python3_gets_the_shim_and_it_runs_there(node_with_python: Path, dest: Path) -> None:
    require_root()
    out = _install(dest, node_with_python, "--python", "/usr/bin/python3")
    assert out.returncode == 0, out.stderr
    shim = dest / "vhostplug"
    assert shim.read_text().splitlines()[0] == "#!/usr/bin/python3 -IS"
    # the installed shim, run inside the node root the way kubelet runs it, answers VERSION
    (node_with_python / "opt" / "cni" / "bin").mkdir(parents=True, exist_ok=True)
    on_node = node_with_python / "opt" / "cni" / "bin" / "vhostplug"
    shutil.copy2(shim, on_node)
    ran = subprocess.run(
        ["/usr/sbin/chroot", str(node_with_python), "/opt/cni/bin/vhostplug"],
        input='{"cniVersion": "1.0.0"}',
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["cniVersion"] == "1.0.0"


@pytest.mark.root
def test_default_python_is_found_under_the_host_root(node_with_python: Path, dest: Path) -> None:
    require_root()
    out = _install(dest, node_with_python)
    assert out.returncode == 0, out.stderr
    assert (dest / "vhostplug").read_text().startswith("#!/usr/bin/python3 -IS\n")
    version = check_interpreter("/usr/bin/python3", node_with_python)
    real = subprocess.run([str(REAL_PYTHON), "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True)
    assert version == tuple(int(v) for v in real.stdout.split())


@pytest.mark.root
def test_node_without_python3_is_refused_and_nothing_written(tmp_path: Path, dest: Path) -> None:
    require_root()
    root = tmp_path / "node-empty"
    _merged_usr(root)
    (dest / "vhostplug").write_text("previous shim\n")
    out = _install(dest, root, "--python", "/usr/bin/python3")
    assert out.returncode == 1
    assert "the node has no /usr/bin/python3" in out.stderr
    assert f"(on the node, looked under the host mount {root})" in out.stderr
    assert "--python /path/on/the/node/python3" in out.stderr
    assert (dest / "vhostplug").read_text() == "previous shim\n"
    assert sorted(p.name for p in dest.iterdir()) == ["vhostplug"]


@pytest.mark.root
def test_node_with_too_old_python_is_refused(tmp_path: Path, dest: Path) -> None:
    require_root()
    root = _node_with_script(tmp_path / "node-old", "#!/bin/sh\necho 3.6.15\n")
    out = _install(dest, root, "--python", "/usr/bin/python3")
    assert out.returncode == 1
    assert "is Python 3.6.15; the shim needs Python >= 3.9" in out.stderr
    assert "--python" in out.stderr
    assert list(dest.iterdir()) == []


@pytest.mark.root
def test_python2_like_interpreter_is_refused(tmp_path: Path, dest: Path) -> None:
    require_root()
    root = _node_with_script(tmp_path / "node-py2", "#!/bin/sh\necho 'Unknown option: -I' >&2\nexit 2\n")
    with pytest.raises(InterpreterError, match=r"does not run as Python 3 with -IS \(Unknown option: -I\)"):
        check_interpreter("/usr/bin/python3", root)


@pytest.mark.root
def test_non_executable_interpreter_is_refused(tmp_path: Path, dest: Path) -> None:
    require_root()
    root = _node_with_script(tmp_path / "node-noexec", "#!/bin/sh\necho 3.12.0\n", mode=0o644)
    out = _install(dest, root, "--python", "/usr/bin/python3")
    assert out.returncode == 1
    assert "/usr/bin/python3 (on the node" in out.stderr and "is not an executable file" in out.stderr
    assert list(dest.iterdir()) == []


@pytest.mark.root
def test_script_whose_own_interpreter_is_missing_is_refused(tmp_path: Path) -> None:
    require_root()
    root = tmp_path / "node-broken"
    _merged_usr(root)
    py = root / "usr" / "bin" / "python3"
    py.write_text("#!/usr/bin/nonexistent\n")
    py.chmod(0o755)
    with pytest.raises(InterpreterError, match="cannot be run"):
        check_interpreter("/usr/bin/python3", root)


def test_relative_python_is_refused() -> None:
    with pytest.raises(InterpreterError, match="must be an absolute path"):
        check_interpreter("python3", Path("/"))


def test_links_resolve_inside_the_host_root(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "python3.12").write_text("")
    os.symlink("/usr/bin/../bin/python3.12", root / "usr" / "bin" / "python3")  # absolute: restarts at the root
    os.symlink("../../../../../usr/bin/python3", root / "usr" / "bin" / "py")  # cannot climb out of the root
    assert resolve_under(root, "/usr/bin/python3") == root / "usr" / "bin" / "python3.12"
    assert resolve_under(root, "/usr/bin/py") == root / "usr" / "bin" / "python3.12"
    os.symlink("loop", root / "usr" / "bin" / "loop")
    with pytest.raises(InterpreterError, match="too many levels"):
        resolve_under(root, "/usr/bin/loop")


def test_lab_install_on_this_machine_checks_its_own_python(tmp_path: Path) -> None:
    exe = install_shim(tmp_path, python=str(REAL_PYTHON))
    assert exe.read_text().startswith(f"#!{REAL_PYTHON} -IS\n")


@pytest.mark.root
def test_without_cap_sys_chroot_the_installer_says_what_it_needs(node_with_python: Path, dest: Path) -> None:
    require_root()
    args = ["install-cni", "--dest", str(dest), "--host-root", str(node_with_python), "--python", "/usr/bin/python3"]
    out = subprocess.run(
        ["setpriv", "--bounding-set=-sys_chroot", VHOSTPLUG, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "needs root with CAP_SYS_CHROOT" in out.stderr
    assert list(dest.iterdir()) == []
