"""A real Prometheus server (Debian's ``prometheus``) for tests: a temporary config scraping given targets every
second, temporary storage, a free port on 127.0.0.1; :meth:`Prometheus.query` runs PromQL through its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from vhostplug_testsupport.containerd_node import free_port

BINARY = "/usr/bin/prometheus"


class Prometheus:
    def __init__(self, targets: list[str], interval: str = "1s") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vhp-prom-", dir="/tmp"))
        self.port = free_port()
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "vhostplug-agent", "static_configs": [{"targets": targets}]}],
        }
        (self.root / "prometheus.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Prometheus:
        log = open(self.root / "prometheus.log", "wb")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                BINARY,
                f"--config.file={self.root / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=log,
        )
        until = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > until:
                raise RuntimeError(f"prometheus did not become ready:\n{self.log()[-2000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` (``data.result``) through ``/api/v1/query``."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets_up(self) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as resp:
            body = json.load(resp)
        return [t["scrapeUrl"] for t in body["data"]["activeTargets"] if t["health"] == "up"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
