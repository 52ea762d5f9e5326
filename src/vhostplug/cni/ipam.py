"""IPAM delegation: exec the IPAM plugin named in ``ipam.type`` from ``CNI_PATH``, as the spec says a plugin does."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from vhostplug.cni.spec import INVALID_CONFIG, IPAM_FAILURE, CniError, to_current, version_tuple

#: the newest version most IPAM plugins speak (Debian's host-local 1.1 stops at 1.0.0)
IPAM_MAX_VERSION = "1.0.0"


def find_plugin(name: str, cni_path: tuple[str, ...]) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise CniError(INVALID_CONFIG, f"ipam.type {name!r} is not a plugin name")
    for folder in cni_path:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(INVALID_CONFIG, f"IPAM plugin {name!r} not found in CNI_PATH", ":".join(cni_path) or "(empty)")


class Running:
    """An IPAM plugin started for one command; :meth:`result` waits for it. ADD starts it early, so the plugin's own
    start-up (a Go binary's runtime) overlaps the agent's other work."""

    def __init__(
        self, command: str, conf: dict[str, Any], env: dict[str, str], cni_path: tuple[str, ...], timeout: float = 30.0
    ) -> None:
        ipam = conf.get("ipam") or {}
        self.command, self.timeout = command, timeout
        self.plugin = find_plugin(str(ipam.get("type", "")), cni_path)
        payload = dict(conf)
        version = str(payload.get("cniVersion") or IPAM_MAX_VERSION)
        if version_tuple(version) > version_tuple(IPAM_MAX_VERSION):
            payload["cniVersion"] = IPAM_MAX_VERSION
        payload.pop("cniVersions", None)
        if "prevResult" in payload and command != "CHECK":
            payload.pop("prevResult")
        # the plugin gets the CNI variables and PATH, not the agent's own environment
        child_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env, "CNI_COMMAND": command}
        self._stdin = json.dumps(payload).encode()
        self._outcome: dict[str, Any] | CniError | None = None
        self._deadline = time.monotonic() + timeout
        self._proc = subprocess.Popen(
            [str(self.plugin)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
        )

    def result(self) -> dict[str, Any]:
        """The plugin's parsed result ({} for DEL/CHECK); CniError when it failed or timed out (asked again: the
        same answer)."""
        if self._outcome is None:
            try:
                self._outcome = self._wait()
            except CniError as err:
                self._outcome = err
        if isinstance(self._outcome, CniError):
            raise self._outcome
        return self._outcome

    def _wait(self) -> dict[str, Any]:
        plugin, command = self.plugin, self.command
        try:
            stdout, stderr = self._proc.communicate(self._stdin, timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise CniError(
                IPAM_FAILURE, f"IPAM plugin {plugin.name} {command} timed out after {self.timeout:.0f}s"
            ) from None
        out = stdout.decode(errors="replace").strip()
        if self._proc.returncode != 0:
            try:
                err = json.loads(out)
                msg, details = str(err.get("msg", out)), str(err.get("details", ""))
            except ValueError:
                msg, details = out or stderr.decode(errors="replace").strip(), ""
            raise CniError(IPAM_FAILURE, f"IPAM plugin {plugin.name} {command} failed: {msg}", details)
        if command != "ADD" or not out:
            return {}
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            raise CniError(IPAM_FAILURE, f"IPAM plugin {plugin.name} returned invalid JSON", out[:200]) from None
        if not isinstance(result, dict):
            raise CniError(IPAM_FAILURE, f"IPAM plugin {plugin.name} returned no JSON object", out[:200])
        return to_current(result)  # it answers in the version it was asked (0.2.0: ip4/ip6)

    def reap(self) -> None:
        """Wait for the plugin without judging it (a failed ADD rolls back whatever it did with a DEL)."""
        with contextlib.suppress(CniError):
            self.result()


def delegate(
    command: str, conf: dict[str, Any], env: dict[str, str], cni_path: tuple[str, ...], timeout: float = 30.0
) -> dict[str, Any]:
    """Run the IPAM plugin for ``command``; return its parsed result ({} for DEL/CHECK), raise CniError on failure."""
    return Running(command, conf, env, cni_path, timeout).result()
