"""The real Multus thin plugin (v4.0.x), exec'd as a container runtime execs it, for the lab and the tests.

Where the binary is: ``$VHOSTPLUG_MULTUS`` (a path; ``none`` says on purpose that there is none), else
``shared/peers/multus`` beside the repository (the CI clone's layout) or beside its parent (a worktree's).

Multus 4.0.x reads kubelet's PodResources API at a fixed path, ``/var/lib/kubelet/pod-resources/kubelet.sock``: no
config key moves it (``kubeletclient.GetResourceClient("")``). So that two labs, or a lab and the tests, can each
serve their own, :func:`exec_multus` runs Multus in a private mount namespace where the lab kubelet's own
pod-resources folder is bound over that path. Nothing machine-wide is touched but the empty mount point folder
(made once, never removed: another run's namespace may have its folder bound there). Everything else Multus and its
delegates see is the host's: the device-info folder, the network namespaces, the agent's socket.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENV = "VHOSTPLUG_MULTUS"
#: where Multus 4.0.x looks for kubelet's PodResources socket (``kubelet.sock`` in it)
POD_RESOURCES_DIR = Path("/var/lib/kubelet/pod-resources")
REPO = Path(__file__).resolve().parents[3]


class MultusMissing(RuntimeError):
    """The real Multus binary is not where it was said to be, or not anywhere looked."""


def locate(repo: Path = REPO) -> Path | None:
    """The Multus binary to run; None when ``$VHOSTPLUG_MULTUS`` is ``none``. Raises MultusMissing otherwise."""
    asked = os.environ.get(ENV, "")
    if asked.lower() == "none":
        return None
    if asked:
        path = Path(asked)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise MultusMissing(f"{ENV}={asked} is not an executable file")
        return path
    looked = [repo.parent / "shared/peers/multus", repo.parent.parent / "shared/peers/multus"]
    for path in looked:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise MultusMissing(
        f"the real Multus binary is not at {' or '.join(map(str, looked))}: set {ENV}=<path of a Multus 4.0.x thin "
        f"plugin binary> to run the real-Multus suite, or {ENV}=none to say it is not to run here"
    )


@dataclass
class MultusRun:
    code: int
    stdout: str
    stderr: str


def exec_multus(
    binary: Path, env: dict[str, str], stdin: str, pod_resources_dir: Path, timeout: float = 60.0
) -> MultusRun:
    """Exec ``binary`` with the CNI ``env`` and the network config on ``stdin``, in a private mount namespace where
    ``pod_resources_dir`` (holding the lab kubelet's ``kubelet.sock``) is at :data:`POD_RESOURCES_DIR`."""
    POD_RESOURCES_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
    script = 'mount --bind "$1" "$2" && exec "$3"'
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "multus-ns",
        str(pod_resources_dir),
        str(POD_RESOURCES_DIR),
        str(binary),
    ]
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return MultusRun(proc.returncode, proc.stdout, proc.stderr)
