"""vhost-user throughput accounting, not timed: testpmd ``txonly`` → ``rxonly`` through the private OVS-DPDK, in
both modes, and every packet the sender handed to its ring is either received by the other app or counted as
dropped by OVS on the way. A broken ring, a lost queue or a silently dropping port fails here, not in a benchmark."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from vhostplug.dataplane.ovs import OvsDataplane
from vhostplug.lab.ovs import PrivateOvs
from vhostplug.lab.ovsdb import interface_stats
from vhostplug.lab.rate import port_counters, start_flow, stop_flow
from vhostplug.lab.testpmd import Testpmd
from vhostplug.model import Attachment, Mode
from vhostplug_testsupport.bridges import delete_bridge_if_ours

#: OVS's own drop counters of a vhost-user port (custom statistics, published in both modes)
DROPS = ("ovs_tx_failure_drops", "ovs_tx_mtu_exceeded_drops", "ovs_tx_qos_drops", "ovs_rx_qos_drops")


#: packets the receiver counts before the flow stops: many times around every ring (256-1024 descriptors); twice
#: the sender's asserted minimum (a 2-core machine shared with other PMD threads moves as little as ~7 kpps)
FLOW_PACKETS = 20_000


def _drops(stats: dict[str, int]) -> int:
    return sum(stats.get(k, 0) for k in DROPS)


def _accounted(dp: OvsDataplane, a: str, b: str, sent: int, received: int, timeout: float = 25.0) -> dict[str, Any]:
    """OVS writes Interface statistics to OVSDB every 5 s, and one write may hold the drop counters of the newest
    reading with packet counters a burst behind: poll until sent == received + OVS drops on the way and, where OVS
    publishes packet counters, they show sent and received too (or give up and return the last reading, for the
    assertions to show)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = interface_stats(dp.endpoint, (a, b))
        sa, sb = stats[a], stats[b]
        counted = "rx_packets" not in sa or (sa["rx_packets"] == sent and sb.get("tx_packets") == received)
        if (sent == received + _drops(sa) + _drops(sb) and counted) or time.monotonic() > deadline:
            return {"a": sa, "b": sb}
        time.sleep(0.5)


def _wait_received(receiver: Testpmd, packets: int, timeout: float) -> None:
    """Until the receiving app has counted ``packets`` (the flow runs for as many packets, not for a time)."""
    deadline = time.monotonic() + timeout
    while (got := port_counters(receiver)[0]) < packets:
        assert time.monotonic() < deadline, f"the receiver got {got} packets in {timeout:.0f} s, waited for {packets}"
        time.sleep(0.05)


def _packed_negotiated(ovs: PrivateOvs, socket_path: str) -> bool:
    """VIRTIO_F_RING_PACKED in the features ovs-vswitchd's vhost library last negotiated on ``socket_path``."""
    found = re.findall(
        rf"\({re.escape(socket_path)}\) negotiated Virtio features: (0x[0-9a-f]+)", ovs.vswitchd_log.read_text()
    )
    assert found, f"ovs-vswitchd logged no feature negotiation for {socket_path}"
    return bool(int(found[-1], 16) >> 34 & 1)


@pytest.mark.parametrize("rings", ["", ",packed_vq=1"], ids=["split-rings", "packed-rings"])
@pytest.mark.parametrize("mode", [Mode.SERVER, Mode.CLIENT], ids=["server-dpdkvhostuserclient", "client-dpdkvhostuser"])
def test_every_packet_sent_is_received_or_counted_dropped(
    private_ovs: PrivateOvs, short_dir: Path, unique: str, mode: Mode, rings: str
) -> None:
    dp = OvsDataplane(private_ovs.endpoint, ovs_rundir=private_ovs.run_dir)
    bridge = f"brt{unique}"
    atts = {
        who: Attachment(
            f"tp{who}{unique}", "net1", f"vtp{who}{unique}", short_dir, f"{who}.sock", mode=mode, bridge=bridge
        )
        for who in ("a", "b")
    }
    apps: dict[str, Testpmd] = {}
    try:
        for who, att in atts.items():
            port = dp.attach(att)
            assert port.ovs_type == ("dpdkvhostuserclient" if mode is Mode.SERVER else "dpdkvhostuser")
            server = ",server=1" if mode is Mode.SERVER else ""
            vdev = f"net_virtio_user0,path={port.socket_path}{server}{rings}"  # packed: what podinfo prints
            apps[who] = Testpmd([vdev], file_prefix=f"tt{who}{unique}")
            apps[who].start(timeout=60)
        for app in apps.values():
            app.wait_link_up(0, timeout=45)
        a, b = apps["a"], apps["b"]
        assert port_counters(a) == (0, 0) and port_counters(b) == (0, 0)
        for who in apps:  # the ring layout asked for is the one OVS negotiated (virtio feature bit 34)
            path = dp.get_port(atts[who].port_name).socket_path  # type: ignore[union-attr]
            assert _packed_negotiated(private_ovs, path) is bool(rings)
        start_flow(a, b, 64)
        _wait_received(b, FLOW_PACKETS, timeout=60)
        stop_flow(a, b)
        sent = port_counters(a)[1]
        received, b_sent = port_counters(b)
        stats = _accounted(dp, atts["a"].port_name, atts["b"].port_name, sent, received)
    finally:
        for app in apps.values():
            app.stop()
        for att in atts.values():
            dp.detach(att.port_name)
        delete_bridge_if_ours(dp.endpoint, bridge)
        dp.close()
    ovs_a, ovs_b = stats["a"], stats["b"]
    assert sent > 10_000, f"the sender moved almost nothing: {sent}"
    assert received > 0
    # every packet a's testpmd handed to its ring reached b's testpmd or was counted dropped by OVS on the way
    dropped = _drops(ovs_a) + _drops(ovs_b)
    assert sent == received + dropped, f"sent {sent} != received {received} + OVS drops {dropped}: {ovs_a} {ovs_b}"
    assert 0 < b_sent <= 64  # b sent only its one `tx_first` burst (so that the bridge learns its MAC)
    # where OVS publishes packet counters (dpdkvhostuserclient; OVS 3.1 shows only the ovs_* counters of a
    # dpdkvhostuser port), they say the same
    if "rx_packets" in ovs_a:
        assert ovs_a["rx_packets"] == sent and ovs_b["tx_packets"] == received, (ovs_a, ovs_b)
        assert ovs_b["tx_dropped"] == dropped and ovs_b["rx_packets"] == b_sent
    else:
        assert mode is Mode.CLIENT, ovs_a
