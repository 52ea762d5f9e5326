"""CNI spec 0.4.0 / 1.0.0 / 1.1.0: versions, error codes, the environment, and result shapes.

Pure functions and types: the handler builds on them, the shim does not import them (it must stay stdlib-only and
tiny), and the agent turns a :class:`CniError` into the spec's error JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# error codes of the spec, and ours (100+)
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
STATUS_UNAVAILABLE = 50
DATAPLANE_FAILURE = 100
UNSAFE_PATH = 101
IPAM_FAILURE = 102

MAX_FILE_NAME = 255
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class CniError(Exception):
    """An error the plugin reports as ``{cniVersion, code, msg, details}`` on stdout (exit code 1)."""

    code: int
    msg: str
    details: str = ""

    def __str__(self) -> str:
        return f"[{self.code}] {self.msg}" + (f": {self.details}" if self.details else "")

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        raise CniError(DECODE_FAILURE, f"invalid cniVersion {v!r}") from None


def negotiate(cni_version: str | None, cni_versions: list[str] | None) -> str:
    """Pick the version to speak: the highest of ``cniVersions`` we support, else ``cniVersion`` if supported."""
    if cni_versions:
        ours = [v for v in cni_versions if v in SUPPORTED_VERSIONS]
        if not ours:
            raise CniError(
                INCOMPATIBLE_VERSION,
                "none of the cniVersions is supported",
                f"asked {', '.join(cni_versions)}; supported {', '.join(SUPPORTED_VERSIONS)}",
            )
        return max(ours, key=version_tuple)
    if not cni_version:
        raise CniError(INVALID_CONFIG, "network configuration has no cniVersion")
    if cni_version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {cni_version} is not supported",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    return cni_version


def parse_cni_args(raw: str) -> dict[str, str]:
    """``K=V;K=V`` (values may contain '=')."""
    out: dict[str, str] = {}
    for part in raw.split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENV, f"CNI_ARGS entry {part!r} is not KEY=VALUE")
        out[key] = value
    return out


def check_container_id(cid: str) -> str:
    if not cid:
        raise CniError(INVALID_ENV, "CNI_CONTAINERID is required")
    if len(cid) > 256 or not _CONTAINER_ID.match(cid) or ".." in cid:
        raise CniError(
            INVALID_ENV,
            f"CNI_CONTAINERID {cid!r} is invalid",
            "allowed: letters, digits, '_', '.', '-' (no '/', '..' or NUL), at most 256 characters",
        )
    return cid


def check_ifname(ifname: str) -> str:
    if not ifname:
        raise CniError(INVALID_ENV, "CNI_IFNAME is required")
    if len(ifname.encode()) > 15:
        raise CniError(INVALID_ENV, f"CNI_IFNAME {ifname!r} is {len(ifname.encode())} bytes; the limit is 15")
    if ifname in (".", "..") or any(c in ifname for c in "/:\0") or any(c.isspace() for c in ifname):
        raise CniError(INVALID_ENV, f"CNI_IFNAME {ifname!r} is invalid", "no '/', ':', whitespace or NUL allowed")
    return ifname


def check_file_name_fits(cid: str, ifname: str) -> None:
    """The app's config file is named ``<container id>-<ifname>`` (kuryr's convention): one file name, 255 bytes."""
    n = len(cid.encode()) + 1 + len(ifname.encode())
    if n > MAX_FILE_NAME:
        raise CniError(
            INVALID_ENV,
            f"CNI_CONTAINERID and CNI_IFNAME are too long together: '<container id>-<ifname>' is {n} bytes",
            f"the app's config file is named so and a file name holds at most {MAX_FILE_NAME} bytes",
        )


@dataclass(frozen=True)
class CniEnv:
    command: str
    container_id: str
    ifname: str
    netns: str
    path: tuple[str, ...]
    args: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> CniEnv:
        command = env.get("CNI_COMMAND", "")
        if command not in VERBS:
            raise CniError(INVALID_ENV, f"CNI_COMMAND {command!r} is not one of {', '.join(VERBS)}")
        needs_container = command in ("ADD", "DEL", "CHECK")
        cid = env.get("CNI_CONTAINERID", "")
        ifname = env.get("CNI_IFNAME", "")
        if needs_container:
            check_container_id(cid)
            check_ifname(ifname)
        if command in ("ADD", "CHECK"):
            check_file_name_fits(cid, ifname)
        netns = env.get("CNI_NETNS", "")
        if command in ("ADD", "CHECK") and not netns:
            raise CniError(INVALID_ENV, f"CNI_NETNS is required for {command}")
        path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
        return cls(command, cid, ifname, netns, path, parse_cni_args(env.get("CNI_ARGS", "")))


def interface_entry(
    cni_version: str, ifname: str, mac: str, sandbox: str, socket_path: str, mtu: int | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": ifname, "mac": mac, "sandbox": sandbox}
    if version_tuple(cni_version) >= (1, 1, 0):
        entry["socketPath"] = socket_path
        if mtu:
            entry["mtu"] = mtu
    return entry


def convert_ips(cni_version: str, ips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """IPAM results come in 1.0 shape; 0.4.0 wants ``version`` on each IP."""
    out = []
    for ip in ips:
        entry = {k: v for k, v in ip.items() if k != "version"}
        entry["interface"] = 0
        if cni_version == "0.4.0":
            entry["version"] = "6" if ":" in str(entry.get("address", "")) else "4"
        out.append(entry)
    return out
