"""Validators and default paths shared by every configuration vhostplug reads (agent config, device plugin config,
network config, the KubeVirt parts): one definition of an octal mode, an absolute path, a pydantic error message, and
the well-known folders."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # no pydantic import at run time: the webhook and the sidecar import the defaults here
    from pydantic import ValidationError

#: the host folder of socket folders, and where a device folder appears inside a container
DEFAULT_SOCKET_ROOT = Path("/var/run/vhostplug")
DEFAULT_CONTAINER_ROOT = "/var/run/vhostplug"
#: the shared folder of the stable per-interface links in virt-launcher pods (KubeVirt)
DEFAULT_LINKS_DIR = Path("/var/run/vhostplug-links")
#: Multus' device-info folder
DEFAULT_DEVINFO_DIR = Path("/var/run/k8s.cni.cncf.io/devinfo")

_OCTAL_RE = re.compile(r"0?[0-7]{3}")


def octal_mode(value: Any) -> int:
    """A file mode given as an octal string (``"0770"``, ``"770"``) or an int (YAML reads ``0770`` as one)."""
    if isinstance(value, bool):
        raise ValueError("a mode is an octal string such as '0770'")
    if isinstance(value, str):
        if not _OCTAL_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an octal mode such as '0770'")
        value = int(value, 8)
    if not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"{value!r} is not a mode between 0000 and 0777")
    return value


def absolute_path(value: str, key: str) -> str:
    """An absolute path without ``..`` or NUL, trailing slashes dropped."""
    if not value.startswith("/") or "\0" in value or ".." in value.split("/"):
        raise ValueError(f"{key} must be an absolute path without '..' (got {value!r})")
    return value.rstrip("/") or "/"


Where = Callable[[tuple[Any, ...]], str]


def problems(exc: ValidationError, top: str = "(top level)", where: Where | None = None) -> list[str]:
    """One line per problem, ``<key path>: <what>`` (an unknown key says so)."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        place = where(loc) if where is not None else ".".join(str(p) for p in loc) or top
        what = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{place}: {what}")
    return out


def describe(exc: ValidationError, top: str = "(top level)", where: Where | None = None) -> str:
    """:func:`problems` joined with '; '."""
    return "; ".join(problems(exc, top, where))
