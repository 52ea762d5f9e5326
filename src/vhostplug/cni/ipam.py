"""IPAM delegation: exec the IPAM plugin named in ``ipam.type`` from ``CNI_PATH``, as the spec says a plugin does."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from vhostplug.cni.spec import INVALID_CONFIG, IPAM_FAILURE, CniError, version_tuple

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


def delegate(
    command: str, conf: dict[str, Any], env: dict[str, str], cni_path: tuple[str, ...], timeout: float = 30.0
) -> dict[str, Any]:
    """Run the IPAM plugin for ``command``; return its parsed result ({} for DEL/CHECK), raise CniError on failure."""
    ipam = conf.get("ipam") or {}
    plugin = find_plugin(str(ipam.get("type", "")), cni_path)
    payload = dict(conf)
    version = str(payload.get("cniVersion") or IPAM_MAX_VERSION)
    if version_tuple(version) > version_tuple(IPAM_MAX_VERSION):
        payload["cniVersion"] = IPAM_MAX_VERSION
    payload.pop("cniVersions", None)
    if "prevResult" in payload and command != "CHECK":
        payload.pop("prevResult")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    child_env.update(env)
    child_env["CNI_COMMAND"] = command
    try:
        proc = subprocess.run(
            [str(plugin)],
            input=json.dumps(payload).encode(),
            env=child_env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CniError(IPAM_FAILURE, f"IPAM plugin {plugin.name} {command} timed out after {timeout:.0f}s") from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            msg, details = str(err.get("msg", out)), str(err.get("details", ""))
        except ValueError:
            msg, details = out or proc.stderr.decode(errors="replace").strip(), ""
        raise CniError(IPAM_FAILURE, f"IPAM plugin {plugin.name} {command} failed: {msg}", details)
    if command != "ADD" or not out:
        return {}
    try:
        result: dict[str, Any] = json.loads(out)
    except ValueError:
        raise CniError(IPAM_FAILURE, f"IPAM plugin {plugin.name} returned invalid JSON", out[:200]) from None
    return result
