"""CNI spec 0.1.0 to 1.1.0: versions, error codes, the environment, and result shapes.

Pure functions and types: the handler builds on them, the shim does not import them (it must stay stdlib-only and
tiny), and the agent turns a :class:`CniError` into the spec's error JSON.

Results are built in the 1.x shape and converted on the way out to the version the caller asked for, as libcni
converts them: 0.3.x and 0.4.0 put ``version`` on each IP and have no 1.1 interface fields; 0.1.0 and 0.2.0 have no
interfaces at all, only ``ip4`` / ``ip6`` objects (``{ip, gateway, routes}``). An IPAM plugin's result, which comes
back in the version it was asked for, is brought up to the 1.x shape first (:func:`to_current`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
#: the first spec version that has each verb (ADD, DEL and VERSION are in every one)
VERB_SINCE = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}

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


def require_verb(command: str, cni_version: str) -> None:
    """Code 1 when the negotiated version has no such verb (CHECK came with 0.4.0, STATUS and GC with 1.1.0)."""
    since = VERB_SINCE.get(command)
    if since is not None and version_tuple(cni_version) < version_tuple(since):
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {cni_version} does not have {command}",
            f"{command} is in CNI {since} and later",
        )


def convert_ips(cni_version: str, ips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """IPAM results come in 1.0 shape; 0.3.x and 0.4.0 want ``version`` on each IP."""
    out = []
    for ip in ips:
        entry = {k: v for k, v in ip.items() if k != "version"}
        entry["interface"] = 0
        if _has_ip_version(cni_version):
            entry["version"] = _family(entry)
        out.append(entry)
    return out


def _has_ip_version(cni_version: str) -> bool:
    return (0, 3, 0) <= version_tuple(cni_version) < (1, 0, 0)


def _family(ip: dict[str, Any]) -> str:
    return "6" if ":" in str(ip.get("address", "")) else "4"


def _route_family(route: dict[str, Any]) -> str:
    return "6" if ":" in str(route.get("dst", "")) else "4"


#: interface fields that came with CNI 1.1.0
_IFACE_11 = ("mtu", "socketPath", "pciID")


def convert_result(result: dict[str, Any], cni_version: str) -> dict[str, Any]:
    """A result in the 1.x shape, in the shape of ``cni_version`` (see the module docstring)."""
    v = version_tuple(cni_version)
    if v >= (1, 1, 0):
        return {**result, "cniVersion": cni_version}
    interfaces = [{k: x for k, x in i.items() if k not in _IFACE_11} for i in result.get("interfaces", [])]
    ips = [dict(ip) for ip in result.get("ips", [])]
    if v >= (0, 3, 0):
        out: dict[str, Any] = {"cniVersion": cni_version, "interfaces": interfaces}
        for ip in ips:
            if v < (1, 0, 0):
                ip["version"] = _family(ip)
            else:
                ip.pop("version", None)
        out["ips"] = ips
        for key in ("routes", "dns"):
            if result.get(key):
                out[key] = result[key]
        return out
    # 0.1.0 / 0.2.0: the first address of each family, the routes by their destination's family
    out = {"cniVersion": cni_version}
    routes = result.get("routes") or []
    for fam in ("4", "6"):
        first = next((ip for ip in ips if _family(ip) == fam), None)
        if first is None:
            continue
        entry: dict[str, Any] = {"ip": first["address"]}
        if first.get("gateway"):
            entry["gateway"] = first["gateway"]
        fam_routes = [r for r in routes if _route_family(r) == fam]
        if fam_routes:
            entry["routes"] = fam_routes
        out[f"ip{fam}"] = entry
    if result.get("dns"):
        out["dns"] = result["dns"]
    return out


def to_current(result: dict[str, Any]) -> dict[str, Any]:
    """An IPAM plugin's result in whatever version it came, in the 1.x shape (``ips`` without ``version``)."""
    out = {k: v for k, v in result.items() if k not in ("ip4", "ip6")}
    if "ip4" in result or "ip6" in result:  # 0.1.0 / 0.2.0
        ips: list[dict[str, Any]] = []
        routes: list[dict[str, Any]] = []
        for fam in ("ip4", "ip6"):
            entry = result.get(fam)
            if not isinstance(entry, dict) or not entry.get("ip"):
                continue
            ip: dict[str, Any] = {"address": entry["ip"]}
            if entry.get("gateway"):
                ip["gateway"] = entry["gateway"]
            ips.append(ip)
            routes.extend(r for r in entry.get("routes") or [] if isinstance(r, dict))
        out["ips"] = ips
        if routes:
            out["routes"] = routes
        return out
    if isinstance(result.get("ips"), list):
        out["ips"] = [{k: v for k, v in ip.items() if k != "version"} for ip in result["ips"] if isinstance(ip, dict)]
    return out
