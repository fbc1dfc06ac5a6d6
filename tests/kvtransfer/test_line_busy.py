"""`LineBusyMeter`: what a sender put on the line per wall-clock bucket, and how long it waited."""

from __future__ import annotations

import asyncio
import time

import pytest

from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.kvtransfer.telemetry import LINE_BUCKET_S, LineBusyMeter, PeerSnapshot, TcpInfo
from prfaas.link.relay import LinkRelay
from tests.kvtransfer.conftest import SECRET, make_layers

MIB = 1 << 20


def peer(written: int, queued: int, notsent: int, held: int = 0) -> PeerSnapshot:
    """A peer that has written `written` bytes to its socket, `notsent` of them still in it."""
    info = TcpInfo(1, 0, 1000, 100, 10, 10, 1448, 0, 0, 0, notsent_bytes=notsent)
    return PeerSnapshot("p", 1, 0.0, written, 0, queued, 1, 0, 0, (), (info,), held_bytes=held)


def test_bytes_and_waiting_go_to_the_wall_clock_buckets_they_fall_in() -> None:
    meter = LineBusyMeter()
    t0 = 1000.0  # a bucket boundary (0.2 s buckets): bucket 5000
    meter.observe(t0, [peer(0, 0, 0)])
    meter.observe(t0 + 0.1, [peer(5 * MIB, 3 * MIB, 0)])  # a hand-over: no backlog at the start
    assert meter.buckets == {5000: (5 * MIB, 0.0)}
    # On the wire: written less unsent. 5 MiB on the wire before, 8 - 2 = 6 MiB after: 1 MiB in
    # 0.2 s with a backlog at both ends, half of it in bucket 5000 and half in 5001.
    meter.observe(t0 + 0.3, [peer(8 * MIB, 3 * MIB, 2 * MIB)])
    assert meter.buckets[5000] == pytest.approx((5.5 * MIB, 0.1))
    assert meter.buckets[5001] == pytest.approx((0.5 * MIB, 0.1))
    # The backlog drained inside the interval: its bytes count, its time does not.
    meter.observe(t0 + 0.4, [peer(9 * MIB, 0, 0)])
    assert meter.buckets[5001] == pytest.approx((0.5 * MIB + 3 * MIB, 0.1))
    # Bytes the receiver has not admitted are no backlog of the line.
    meter.observe(t0 + 0.5, [peer(9 * MIB, 4 * MIB, 0, held=4 * MIB)])
    meter.observe(t0 + 0.6, [peer(9 * MIB, 4 * MIB, 0, held=4 * MIB)])
    assert meter.buckets[5002][1] == 0.0
    keys, sent, waited = meter.report(t0 + 0.7)
    assert keys == [5000, 5001, 5002] and waited[0] == pytest.approx(0.1)
    assert meter.report(t0 + 60.0) == ([], [], [])  # an idle sender's old buckets are dropped


def test_a_backlog_the_sending_process_did_not_push_is_no_wait_for_the_line() -> None:
    # The kernel's chrono counters: 100 ms with data, 80 of them limited by the send buffer
    # (the process did not fill it): not a wait for the line. Receiver-window time still is
    # (a userspace link emulator is a receiver to the kernel).
    def busy(written: int, busy_us: int, sndbuf_us: int, rwnd_us: int = 0) -> PeerSnapshot:
        info = TcpInfo(1, 0, 1000, 100, 10, 10, 1448, 0, 0, 0, notsent_bytes=2 * MIB,
                       busy_time_us=busy_us, rwnd_limited_us=rwnd_us, sndbuf_limited_us=sndbuf_us)  # fmt: skip
        return PeerSnapshot("p", 1, 0.0, written, 0, 3 * MIB, 1, 0, 0, (), (info,))

    meter = LineBusyMeter()
    meter.observe(20.0, [busy(10 * MIB, 0, 0)])
    meter.observe(20.1, [busy(11 * MIB, 100_000, 80_000)])
    assert sum(w for _, w in meter.buckets.values()) == 0.0
    meter.observe(20.2, [busy(12 * MIB, 200_000, 80_000, rwnd_us=90_000)])
    assert sum(w for _, w in meter.buckets.values()) == pytest.approx(0.1)


def test_a_peer_link_that_drops_or_an_idle_sender_counts_nothing() -> None:
    meter = LineBusyMeter()
    meter.observe(10.0, [peer(10 * MIB, 5 * MIB, 0)])
    meter.observe(10.1, [peer(1 * MIB, 5 * MIB, 0)])  # a new link: its count restarts
    assert meter.buckets == {}
    meter.observe(10.2, [])  # nothing open
    meter.observe(10.3, [peer(50 * MIB, 5 * MIB, 0)])  # the next transfer: no jump counted
    assert meter.buckets == {}


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
        t0 = time.monotonic()
        done = asyncio.ensure_future(rx.wait_done())
        while not done.done():
            meter.observe(time.time(), tx_side.snapshot())
            await asyncio.sleep(0.05)
        await done
        elapsed = time.monotonic() - t0
        await tx.wait_done()
        assert dst == src
        # The buckets the sender waited in through (all of them but the first and last).
        full = [b for b, s in meter.buckets.values() if s >= 0.99 * LINE_BUCKET_S]
        assert len(full) >= 4  # most of the ~2 s transfer had a backlog
        measured = sum(full) / (len(full) * LINE_BUCKET_S)
        # The oracle is the transfer's own rate end to end (the relay shares this event loop, so
        # a loaded machine can carry less than the shaped rate), and never above the shaping.
        assert measured == pytest.approx(len(src) * 2 * MIB / elapsed, rel=0.25)
        assert measured <= 1.25 * rate
    finally:
        await tx_side.close()
        await relay.close()
        await rx_side.close()
