"""`LineBusyMeter`: the line's rate measured in the stretches where KV waited for it."""

from __future__ import annotations

import asyncio
import time

import pytest

from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.kvtransfer.telemetry import LineBusyMeter, PeerSnapshot, TcpInfo
from prfaas.link.relay import LinkRelay
from tests.kvtransfer.conftest import SECRET, make_layers

MIB = 1 << 20


def peer(written: int, queued: int, notsent: int, held: int = 0) -> PeerSnapshot:
    """A peer that has written `written` bytes to its socket, `notsent` of them still in it."""
    info = TcpInfo(1, 0, 1000, 100, 10, 10, 1448, 0, 0, 0, notsent_bytes=notsent)
    return PeerSnapshot("p", 1, 0.0, written, 0, queued, 1, 0, 0, (), (info,), held_bytes=held)


def test_only_stretches_with_a_backlog_at_both_ends_count() -> None:
    meter = LineBusyMeter()
    meter.observe(0.0, [peer(0, 0, 0)])
    meter.observe(0.1, [peer(5 * MIB, 3 * MIB, 0)])  # a hand-over: no backlog at the start
    assert (meter.bytes, meter.seconds) == (0, 0.0)
    # On the wire: written less unsent. 5 MiB written, 2 unsent -> 3 MiB; then 8 written, 2
    # unsent -> 6 MiB: 3 MiB in 0.1 s with a backlog throughout.
    meter.observe(0.2, [peer(5 * MIB, 3 * MIB, 2 * MIB)])
    meter.observe(0.3, [peer(8 * MIB, 1 * MIB, 2 * MIB)])
    assert meter.bytes == 3 * MIB
    assert meter.seconds == pytest.approx(0.1)
    # The backlog drained inside the stretch: it carried less than the line could; not counted.
    meter.observe(0.4, [peer(9 * MIB, 0, 0)])
    assert meter.bytes == 3 * MIB
    # Bytes the receiver has not admitted are no backlog of the line.
    meter.observe(0.5, [peer(9 * MIB, 4 * MIB, 0, held=4 * MIB)])
    meter.observe(0.6, [peer(9 * MIB, 4 * MIB, 0, held=4 * MIB)])
    assert meter.seconds == pytest.approx(0.1)


def test_a_peer_link_that_drops_counts_nothing() -> None:
    meter = LineBusyMeter()
    meter.observe(0.0, [peer(10 * MIB, 5 * MIB, 0)])
    meter.observe(0.1, [peer(1 * MIB, 5 * MIB, 0)])  # a new link: its count restarts
    assert meter.bytes == 0


async def test_measures_a_shaped_link_from_the_bursts_of_a_transfer() -> None:
    # A relay shaped to 4 MB/s that holds 256 KiB per connection in its queue and its kernel
    # receive buffer each (a path's bytes in flight and bottleneck queue; the relay's defaults,
    # 4 MiB and autotuned, absorb a whole transfer and the sender never waits); a transfer of 4 layers x 2 MiB handed to the sender at once, as a prefill's layers
    # are. Sampled every 50 ms, the meter reads the shaped rate.
    rate = 4e6
    rx_side = await TcpReceiver(secret=SECRET).start()
    relay = await LinkRelay(
        rx_side.address, rate_bytes_per_s=rate, window_bytes=256 << 10, rcvbuf_bytes=256 << 10
    ).start()
    tx_side = TcpSender(secret=SECRET, num_connections=2, chunk_mib=1 / 16)
    try:
        layout, src = make_layers(4, 2 * MIB)
        dst = [bytearray(2 * MIB) for _ in src]
        rx = rx_side.expect("t", layout, [[memoryview(d)] for d in dst], 30)
        tx = tx_side.open(relay.address, "t", layout)
        meter = LineBusyMeter()
        for i, buf in enumerate(src):
            tx.add(i, [memoryview(buf)])
        tx.finish()
        done = asyncio.ensure_future(rx.wait_done())
        while not done.done():
            meter.observe(time.monotonic(), tx_side.snapshot())
            await asyncio.sleep(0.05)
        await done
        await tx.wait_done()
        assert dst == src
        assert meter.seconds > 0.8  # most of the ~2 s transfer had a backlog
        assert meter.bytes / meter.seconds == pytest.approx(rate, rel=0.25)
    finally:
        await tx_side.close()
        await relay.close()
        await rx_side.close()
