"""The lab's stand-in kube-apiserver as a background process of its own, so it outlives `vhostplug lab up` the way
the agent does: `vhostplug lab apiserver --run-dir DIR` serves :class:`~vhostplug.lab.apiserver.ApiServer` (HTTP on
127.0.0.1, a port of its own) until SIGTERM, with the lab node's Node object in it, and writes a kubeconfig for it
(``<run dir>/apiserver.kubeconfig``) and then its URL (``<run dir>/apiserver.url``) once it listens. :func:`start` and :func:`stop` are what `lab up` and `lab down` call.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from vhostplug.lab.ovs import pid_alive
from vhostplug.lab.paths import LabPaths


class ApiServerStartError(RuntimeError):
    pass


def serve(run_dir: Path) -> None:
    """Run the stand-in API server in this process until SIGTERM/SIGINT (the `vhostplug lab apiserver` command)."""
    from vhostplug.lab.apiserver import ApiServer

    paths = LabPaths(run_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    api = ApiServer().start()
    try:
        node = api.resource_for("v1", "Node", "nodes")
        api.store.create(node, "", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": paths.node_name}})
        api.kubeconfig(paths.apiserver_kubeconfig)
        tmp = paths.apiserver_url.with_suffix(".tmp")
        tmp.write_text(api.url + "\n")
        os.replace(tmp, paths.apiserver_url)
        stop.wait()
    finally:
        api.stop()
        with contextlib.suppress(FileNotFoundError):
            paths.apiserver_url.unlink()


def url(paths: LabPaths) -> str | None:
    """The running stand-in's URL, or None."""
    pid = _pid(paths)
    try:
        text = paths.apiserver_url.read_text().strip()
    except OSError:
        return None
    return text if pid is not None and text else None


def _pid(paths: LabPaths) -> int | None:
    try:
        pid = int(paths.apiserver_pidfile.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start(paths: LabPaths, timeout: float = 20.0) -> str:
    """Start it (or keep the running one); returns its URL."""
    if (running := url(paths)) is not None:
        return running
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(Path(sys.executable).with_name("vhostplug")), "lab", "apiserver", "--run-dir", str(paths.run_dir)]
    with open(paths.apiserver_log, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    paths.apiserver_pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (running := url(paths)) is not None:
            return running
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(paths)
    tail = "\n".join(paths.apiserver_log.read_text(errors="replace").splitlines()[-20:])
    raise ApiServerStartError(f"the lab's stand-in kube-apiserver did not come up ({' '.join(argv)}):\n{tail}")


def stop(paths: LabPaths) -> int | None:
    pid = _pid(paths)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for p in (paths.apiserver_pidfile, paths.apiserver_url, paths.apiserver_kubeconfig):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return pid
