"""The guest's ping replies as PingWatch reads them from a serial log being written: each reply stamped once, with the
round trip the guest printed for it; the longest silence and the seqs lost in it."""

from __future__ import annotations

import time
from pathlib import Path

from vhostplug.lab.migration.pings import PingWatch


def _reply(seq: int, ms: float) -> str:
    return f"64 bytes from 10.57.0.20: seq={seq} ttl=64 time={ms:.3f} ms\n"


def test_replies_carry_the_guests_round_trip(short_dir: Path) -> None:
    log = short_dir / "console.log"
    log.write_text("VHP-PING-OK peer=10.57.0.20\n" + _reply(1, 0.5) + _reply(2, 38.909))
    watch = PingWatch([log], poll=0.001).start()
    try:
        watch.wait_replies(2, 0.0, 5)
        t_gap = time.monotonic()
        with log.open("a") as f:  # seqs 3 and 4 lost, then a reply split over two writes
            f.write("64 bytes from 10.57.0.20: seq=5 ttl=64 ")
            f.flush()
            time.sleep(0.05)
            f.write("time=12.250 ms\n")
        watch.wait_replies(3, 0.0, 5)
    finally:
        watch.stop()
    assert [seq for _, seq in watch.snapshot()] == [1, 2, 5]
    assert watch.rtt_ms == {1: 0.5, 2: 38.909, 5: 12.25}
    gap, lost = watch.max_gap(t_gap, time.monotonic())
    assert gap >= 0.05 and lost == 2
    _gap, _lost, since = watch.max_gap_at(t_gap, time.monotonic())
    assert since == watch.snapshot()[1][0]  # the silence began at seq 2's reply
