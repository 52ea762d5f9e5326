"""A packet rate measured honestly between two DPDK testpmd processes: ``txonly`` in the sender, ``rxonly`` in the
receiver, for a fixed time after a warm-up, counted from the receiver's port statistics.

Used by the demo, the dataplane benchmark and the functional throughput check alike. Frame sizes are given as on
the wire (with the 4-byte FCS, 64 and 1518 as RFC 2544 names them); testpmd sends ``frame - 4`` bytes, since
virtio and veth carry no FCS. Gbit/s counts frame bits (FCS included, no preamble or inter-frame gap).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

FCS = 4


class Pmd(Protocol):
    """What the measurement needs of a running interactive testpmd (:class:`vhostplug.lab.testpmd.Testpmd`)."""

    def cmd(self, line: str, timeout: float = 10.0) -> str: ...


@dataclass(frozen=True)
class Flow:
    """One direction measured: packets the sender's testpmd sent and the receiver's testpmd received in the window."""

    sender: str
    receiver: str
    frame_bytes: int
    seconds: float
    sent: int
    received: int

    @property
    def mpps(self) -> float:
        return self.received / self.seconds / 1e6

    @property
    def gbps(self) -> float:
        return self.received * self.frame_bytes * 8 / self.seconds / 1e9

    @property
    def sent_mpps(self) -> float:
        return self.sent / self.seconds / 1e6

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rx_mpps": round(self.mpps, 4),
            "tx_mpps": round(self.sent_mpps, 4),
            "rx_gbps": round(self.gbps, 4),
        }


def port_counters(app: Pmd, port: int = 0) -> tuple[int, int]:
    """(rx packets, tx packets) of one port, from ``show port stats``."""
    import re

    out = app.cmd(f"show port stats {port}")
    m = re.search(r"RX-packets:\s+(\d+).*?TX-packets:\s+(\d+)", out, re.S)
    if m is None:
        raise RuntimeError(f"testpmd printed no port statistics for port {port}: {out[-500:]!r}")
    return int(m.group(1)), int(m.group(2))


def port_mac(app: Pmd, port: int = 0) -> str:
    import re

    m = re.search(r"MAC address:\s+([0-9A-Fa-f:]{17})", app.cmd(f"show port info {port}"))
    if m is None:
        raise RuntimeError(f"testpmd printed no MAC address for port {port}")
    return m.group(1)


def start_flow(sender: Pmd, receiver: Pmd, frame_bytes: int, rx_port: int = 0, tx_port: int = 0) -> None:
    """Receiver in ``rxonly``, sender in ``txonly`` with ``frame_bytes - 4``-byte packets; both started.

    The receiver first sends one burst (``start tx_first``) so that a learning switch on the way knows its MAC, and
    the sender addresses its packets to that MAC: unicast as real traffic is, not flooded to every port.
    """
    receiver.cmd("set fwd rxonly")
    receiver.cmd("start tx_first 1")
    time.sleep(0.3)
    receiver.cmd("stop", timeout=20)
    sender.cmd(f"set eth-peer {tx_port} {port_mac(receiver, rx_port)}")
    receiver.cmd("start")
    sender.cmd("set fwd txonly")
    sender.cmd(f"set txpkts {frame_bytes - FCS}")
    sender.cmd("start")


def stop_flow(sender: Pmd, receiver: Pmd) -> None:
    sender.cmd("stop", timeout=20)
    time.sleep(0.2)  # what is still in flight reaches the receiver before it stops polling
    receiver.cmd("stop", timeout=20)


def measure(
    sender: Pmd,
    receiver: Pmd,
    frame_bytes: int = 64,
    seconds: float = 10.0,
    warmup: float = 2.0,
    names: tuple[str, str] = ("a", "b"),
    tx_port: int = 0,
    rx_port: int = 0,
) -> Flow:
    """Run ``sender`` → ``receiver`` for ``warmup`` + ``seconds``; the rate counts only the measured window."""
    start_flow(sender, receiver, frame_bytes, rx_port, tx_port)
    try:
        time.sleep(warmup)
        _wait_flowing(receiver, rx_port)
        rx0 = port_counters(receiver, rx_port)[0]
        t0 = time.monotonic()
        tx0 = port_counters(sender, tx_port)[1]
        time.sleep(seconds)
        rx1 = port_counters(receiver, rx_port)[0]
        dt = time.monotonic() - t0
        tx1 = port_counters(sender, tx_port)[1]
    finally:
        stop_flow(sender, receiver)
    return Flow(names[0], names[1], frame_bytes, round(dt, 3), tx1 - tx0, rx1 - rx0)


def _wait_flowing(receiver: Pmd, rx_port: int, timeout: float = 15.0) -> None:
    """The warm-up lasts until the receiver counts packets: a switch still enabling a just-connected port's queues
    must not be measured as a zero rate. Gives up after ``timeout`` (the window then shows what flows)."""
    first = port_counters(receiver, rx_port)[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if port_counters(receiver, rx_port)[0] > first:
            return
