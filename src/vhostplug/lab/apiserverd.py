"""The lab's stand-in kube-apiserver as a background process of its own, so it outlives `vhostplug lab up` the way
the agent does: `vhostplug lab apiserver --run-dir DIR` serves :class:`~vhostplug.lab.apiserver.ApiServer` (HTTP on
127.0.0.1, a port of its own) until SIGTERM, with the lab node's Node object in it, and writes a kubeconfig for it
(``<run dir>/apiserver.kubeconfig``) and then its URL (``<run dir>/apiserver.url``) once it listens. :func:`start` and :func:`stop` are what `lab up` and `lab down` call.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from vhostplug.lab import daemon
from vhostplug.lab.paths import LabPaths


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
    return daemon.pid_of(paths.apiserver_pidfile)


def start(paths: LabPaths, timeout: float = 20.0) -> str:
    """Start it (or keep the running one); returns its URL."""
    if (running := url(paths)) is not None:
        return running
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(Path(sys.executable).with_name("vhostplug")), "lab", "apiserver", "--run-dir", str(paths.run_dir)]
    return daemon.start(
        argv,
        paths.apiserver_log,
        paths.apiserver_pidfile,
        lambda: url(paths),
        "the lab's stand-in kube-apiserver",
        timeout,
        also=[paths.apiserver_url, paths.apiserver_kubeconfig],
    )


def stop(paths: LabPaths) -> int | None:
    return daemon.stop(paths.apiserver_pidfile, [paths.apiserver_url, paths.apiserver_kubeconfig])
