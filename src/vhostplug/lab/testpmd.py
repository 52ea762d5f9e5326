"""Drive DPDK's `dpdk-testpmd` interactively (tests and the lab): start it on virtio_user vdevs, send commands, read
port statistics, stop it and remove its `/var/run/dpdk/<file-prefix>` folder.

testpmd is driven through its interactive prompt, never with `--tx-first` on the command line (that turns off
link-state interrupts and the app never notices the backend coming back).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TESTPMD = "dpdk-testpmd"
PROMPT = "testpmd> "


class TestpmdError(RuntimeError):
    pass


@dataclass(frozen=True)
class PortStats:
    rx_packets: int
    tx_packets: int
    rx_pps: int
    tx_pps: int


_STATS_RE = re.compile(
    r"NIC statistics for port (\d+).*?RX-packets:\s+(\d+).*?TX-packets:\s+(\d+).*?Rx-pps:\s+(\d+).*?Tx-pps:\s+(\d+)",
    re.S,
)


class Testpmd:
    """One interactive testpmd process. ``wrap`` prefixes the command (e.g. nsenter into a lab pod). Memory is
    ``--no-huge`` unless ``huge_dir`` names a mounted hugetlbfs."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        vdevs: Sequence[str],
        file_prefix: str,
        wrap: Sequence[str] = (),
        lcores: str = "0@0,1@0",
        memory_mb: int = 256,
        extra_eal: Sequence[str] = (),
        ring: int | None = None,
        mbufs: int = 8192,
        app_args: Sequence[str] = (),
        huge_dir: Path | None = None,
    ) -> None:
        self.file_prefix = file_prefix
        eal = [
            "--no-pci",
            *(["--no-huge"] if huge_dir is None else [f"--huge-dir={huge_dir}"]),
            "-m",
            str(memory_mb),
            f"--file-prefix={file_prefix}",
            f"--lcores={lcores}",
            *extra_eal,
        ]
        for v in vdevs:
            eal.append(f"--vdev={v}")
        # stdout is a pipe: without line buffering, command output lags behind the prompt
        app = ["-i", f"--total-num-mbufs={mbufs}", *app_args]
        if ring is not None:  # descriptors per rx/tx queue (a virtio_user vdev also needs queue_size=<ring>)
            app += [f"--rxd={ring}", f"--txd={ring}"]
        self.argv = [*wrap, "stdbuf", "-oL", TESTPMD, *eal, "--", *app]
        self._proc: subprocess.Popen[str] | None = None
        self._out: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._out)

    def start(self, timeout: float = 30.0) -> Testpmd:
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=0,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self._wait_for(PROMPT, timeout, start=0)
        except BaseException:
            self.stop()  # never leave a half-started testpmd (it holds its file-prefix lock)
            raise
        return self

    def _read(self) -> None:
        proc = self._proc  # a local reference: stop() clears self._proc while this thread may still read
        assert proc is not None and proc.stdout is not None
        stdout = proc.stdout
        while True:
            chunk = stdout.read(1)
            if not chunk:
                return
            with self._lock:
                self._out.append(chunk)

    def _wait_for(self, text: str, timeout: float, start: int) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output
            if text in out[start:]:
                return out[start:]
            if self._proc is not None and self._proc.poll() is not None:
                raise TestpmdError(f"testpmd exited ({self._proc.returncode}):\n{out[-3000:]}")
            time.sleep(0.02)
        raise TestpmdError(f"testpmd: no {text!r} within {timeout:.0f}s:\n{self.output[-3000:]}")

    def cmd(self, line: str, timeout: float = 10.0) -> str:
        """Send one interactive command; return its output up to the next prompt."""
        if self._proc is None or self._proc.stdin is None:
            raise TestpmdError("testpmd is not running")
        start = len(self.output)
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        out = self._wait_for(PROMPT, timeout, start)
        return out[: out.find(PROMPT)]

    def stats(self) -> dict[int, PortStats]:
        out = self.cmd("show port stats all")
        return {int(m[0]): PortStats(int(m[1]), int(m[2]), int(m[3]), int(m[4])) for m in _STATS_RE.findall(out)}

    def link_up(self, port: int = 0) -> bool:
        out = self.cmd(f"show port info {port}")
        return bool(re.search(r"Link status:\s+up", out))

    def wait_link_up(self, port: int = 0, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.link_up(port):
                return
            time.sleep(0.2)
        raise TestpmdError(f"port {port} link did not come up within {timeout:.0f}s")

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._proc = None
        shutil.rmtree(Path("/var/run/dpdk") / self.file_prefix, ignore_errors=True)

    def __enter__(self) -> Testpmd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
