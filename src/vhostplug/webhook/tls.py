"""The webhook's TLS: a server SSLContext (TLS 1.2+, AEAD suites only) whose cert and key are re-read when they change.

Owns: :class:`CertReloader`; a certificate that changed on disk but does not load is reported (:attr:`problem`) and
the loaded one is kept until the files are whole again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger("vhostplug.webhook")

#: TLS 1.2 suites: ECDHE with AEAD only (no CBC, no RSA key exchange); TLS 1.3 suites are all AEAD
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


class CertReloader:
    """An SSLContext whose cert/key are re-read when either file's mtime (or size) changes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_ciphers(TLS12_CIPHERS)
        self.stamp: tuple[float, int, float, int] | None = None
        self.reloads = 0
        #: why the files on disk are not what is served (None: they are)
        self.problem: str | None = None
        self.check(initial=True)

    def _stamp(self) -> tuple[float, int, float, int]:
        c, k = os.stat(self.cert), os.stat(self.key)
        return (c.st_mtime, c.st_size, k.st_mtime, k.st_size)

    def check(self, initial: bool = False) -> bool:
        try:
            stamp = self._stamp()
        except OSError as exc:
            if initial:
                raise
            if self.problem is None:
                log.warning("cannot stat TLS files: %s (keeping the loaded cert)", exc)
            self.problem = f"cannot read the TLS files: {exc}"
            return False
        if stamp == self.stamp:
            if self.problem and self.problem.startswith("cannot read"):
                self.problem = None  # the same files are back
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            if initial:
                raise
            if self.problem is None:
                log.warning("TLS cert/key changed but do not load (%s); keeping the old one until they do", exc)
            self.problem = f"the TLS cert/key on disk do not load: {exc}"
            return False
        self.stamp = stamp
        self.problem = None
        if not initial:
            self.reloads += 1
            log.info("reloaded TLS certificate %s", self.cert)
        return True

    async def watch(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
