"""Generated CNI inputs for the fuzz suites: netconfs (mutations of a valid one), ``CNI_*`` environments and raw wire
requests, all drawn from one ``random.Random`` so that a seed reproduces a case.

Host paths stay inside the caller's sandbox: ``socketRoot`` is only ever generated under the given root and
``CNIDeviceInfoFile`` in the given device-info folder, ``CNI_PATH`` is the given folder (no IPAM plugin in it), and the kuryr keys never get an object (their
mount points are host paths). Everything else is fair game: wrong types, unknown keys, unicode, lone surrogates,
huge numbers, deep nesting.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC")
KEYS = (
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "bridge",
    "mode",
    "mtu",
    "vlan",
    "containerSocketRoot",
    "ipam",
    "dns",
    "capabilities",
    "runtimeConfig",
    "deviceID",
    "pciBusID",
    "args",
    "prevResult",
    "disableCheck",
    "disableGC",
    "cni.dev/attachments",
    "cni.dev/valid-attachments",
)
PATH_KEYS = ("kuryr", "osVif", "neutronPort")  # host paths inside: never an object here
SUB_ROOTS = ("sub", "a", "a/b")  # socket roots below the given one; the node makes them (see CniGen.make_roots)
ODD_TEXT = ("", ".", "..", "/", "a/b", "\0", "\u202e", "\ufeff", " ", "é", "\ud800", "x" * 300, "-", "vu00", "1.1.0")


@dataclass
class Case:
    env: dict[str, str]
    conf: dict[str, Any]

    def stdin(self) -> bytes:
        return json.dumps(self.conf).encode("utf-8", "surrogatepass")


class CniGen:
    def __init__(
        self,
        rng: random.Random,
        socket_root: Path,
        cni_path: Path,
        agent_socket: str = "",
        devinfo_dir: Path | None = None,
    ) -> None:
        self.rng = rng
        self.socket_root = socket_root
        # an existing folder, as Multus's device-info folder is (the caller makes it)
        self.devinfo_dir = devinfo_dir or socket_root.parent / "devinfo"
        self.cni_path = cni_path
        self.agent_socket = agent_socket

    def make_roots(self) -> set[str]:
        """Make the socket roots the generator may pick (socket roots are the node's, made before any ADD); returns
        them as paths relative to the given root, for leftover checks to ignore."""
        for sub in SUB_ROOTS:
            (self.socket_root / sub).mkdir(parents=True, exist_ok=True)
        return set(SUB_ROOTS)

    # -- values ------------------------------------------------------------------------------------------------
    def text(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.3:
            return r.choice(ODD_TEXT)
        if pick < 0.6:
            return "".join(r.choice(string.ascii_letters + string.digits + "-_.") for _ in range(r.randint(1, 20)))
        return "".join(
            chr(r.choice((r.randint(32, 126), r.randint(0x80, 0x2FFF), r.randint(0, 31))))
            for _ in range(r.randint(0, 12))
        )

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        pick = r.random()
        if depth > 3 or pick < 0.55:
            return r.choice(
                (
                    None,
                    True,
                    False,
                    0,
                    -1,
                    r.randint(-(2**70), 2**70),
                    r.random() * 1e6,
                    1e308,
                    self.text(),
                    self.text(),
                    68,
                    9000,
                    4095,
                )
            )
        if pick < 0.75:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if pick < 0.97:
            return {self.text(): self.value(depth + 1) for _ in range(r.randint(0, 4))}
        return self.nested(r.randint(2, 80))

    def nested(self, depth: int) -> Any:
        out: Any = self.rng.choice((1, "x", None))
        for _ in range(depth):
            out = [out] if self.rng.random() < 0.5 else {"k": out}
        return out

    # -- a netconf ---------------------------------------------------------------------------------------------
    def base_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": self.rng.choice(("1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.2.0")),
            "name": "fuzznet",
            "type": "vhostplug",
            "socketRoot": str(self.socket_root),
            "bridge": "br-fuzz",
        }
        if self.agent_socket:
            conf["agentSocket"] = self.agent_socket
        return conf

    def conf(self) -> dict[str, Any]:
        r = self.rng
        conf = self.base_conf()
        for _ in range(r.choice((0, 0, 1, 1, 2, 3, 5))):
            op = r.random()
            if op < 0.5:
                conf[r.choice(KEYS)] = self.value()
            elif op < 0.6:
                conf.pop(r.choice(list(conf)), None)
                if self.agent_socket:
                    conf["agentSocket"] = self.agent_socket
            elif op < 0.7:
                conf[self.text()] = self.value()  # an unknown key
            elif op < 0.8:
                conf["runtimeConfig"] = self.runtime_config()
            elif op < 0.85:
                conf["socketRoot"] = str(self.socket_root / r.choice(("", *SUB_ROOTS, "..", "x" * 120)))
            elif op < 0.9:
                conf[r.choice(PATH_KEYS)] = r.choice((None, 1, True, [], "x"))
            elif op < 0.95:
                conf["mode"] = r.choice(("server", "client", "Server", "", None, 1))
            else:
                conf["args"] = {"cni": {"x": self.value()}, "pad": "p" * r.randint(0, 5000)}
        return conf

    def runtime_config(self) -> dict[str, Any]:
        r = self.rng
        rc: dict[str, Any] = {}
        if r.random() < 0.5:
            rc["deviceID"] = r.choice((self.text(), "vu00", "..", "a/b", 5))
        if r.random() < 0.5:  # a file right in the folder: ADD makes missing folders below it, which DEL keeps
            rc["CNIDeviceInfoFile"] = r.choice(
                (str(self.devinfo_dir / f"{self.text().replace('/', '_')}.json"), "relative.json", 7, "")
            )
        if r.random() < 0.3:
            rc["mac"] = r.choice(("02:00:00:00:00:01", self.text(), 3))
        if r.random() < 0.2:
            rc[self.text()] = self.value()
        return rc

    # -- an environment ----------------------------------------------------------------------------------------
    def container_id(self) -> str:
        r = self.rng
        if r.random() < 0.8:
            return "fz" + "".join(r.choice("0123456789abcdef") for _ in range(r.choice((6, 12, 30, 64))))
        return r.choice((self.text(), "", "a" * r.randint(230, 270), "a..b", "-x"))

    def env(
        self, command: str | None = None, container_id: str | None = None, ifname: str | None = None
    ) -> dict[str, str]:
        r = self.rng
        env = {
            "CNI_COMMAND": command or (r.choice(VERBS) if r.random() < 0.95 else self.text()),
            "CNI_CONTAINERID": container_id if container_id is not None else self.container_id(),
            "CNI_IFNAME": ifname
            if ifname is not None
            else (r.choice(("net1", "eth0", "vhu1")) if r.random() < 0.85 else self.text()),
            "CNI_NETNS": r.choice(("/var/run/netns/fuzz", "", self.text())),
            "CNI_PATH": str(self.cni_path),
        }
        if r.random() < 0.3:
            env["CNI_ARGS"] = r.choice(("IgnoreUnknown=1;K8S_POD_NAME=p", "bad", ";;", "=x", f"A={self.text()}"))
        if r.random() < 0.05:
            env.pop(r.choice(list(env)))
        # an environment is bytes without NUL: what reaches the agent is valid UTF-8 (the wire refuses the rest)
        return {k: v.encode("utf-8", "replace").decode().replace("\0", "") for k, v in env.items()}

    def case(self) -> Case:
        return Case(self.env(), self.conf())

    # -- raw bytes on the wire ---------------------------------------------------------------------------------
    def mutate(self, data: bytes) -> bytes:
        r = self.rng
        buf = bytearray(data)
        for _ in range(r.randint(1, 6)):
            op = r.random()
            pos = r.randint(0, len(buf)) if buf else 0
            if op < 0.3 and buf:
                buf[min(pos, len(buf) - 1)] = r.randint(0, 255)
            elif op < 0.5:
                buf[pos:pos] = bytes(r.randint(0, 255) for _ in range(r.randint(1, 8)))
            elif op < 0.7 and buf:
                del buf[pos : pos + r.randint(1, 16)]
            elif op < 0.85:
                buf[pos:pos] = r.choice((b"\0", b"\n", b"=", b"{", b"[" * 100, b'"', b"\\", b"\xff", b"VHP2 "))
            else:
                buf = buf[:pos]
        return bytes(buf)
