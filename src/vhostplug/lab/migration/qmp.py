"""A minimal QMP client on a unix socket: the greeting, ``qmp_capabilities``, then synchronous commands (events
are skipped)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from vhostplug.lab.migration import MigrationError


class Qmp:
    """A minimal QMP client on a unix socket: greeting, ``qmp_capabilities``, then synchronous commands."""

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.path = path
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise MigrationError(f"no QMP socket at {path} after {timeout:.0f}s") from None
                time.sleep(0.05)
        sock.settimeout(timeout)
        self._sock = sock
        self._buf = b""
        self._recv()  # greeting
        self.execute("qmp_capabilities")

    def _recv(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise MigrationError(f"QMP {self.path}: connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, **arguments: Any) -> Any:
        req: dict[str, Any] = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            msg = self._recv()
            if "event" in msg:
                continue
            if "error" in msg:
                raise MigrationError(f"QMP {command} on {self.path}: {msg['error'].get('desc', msg['error'])}")
            return msg.get("return")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
