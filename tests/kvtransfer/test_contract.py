"""Contract tests run against both the TCP and the loopback implementation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from prfaas.kvtransfer.base import (
    PeerLost,
    TransferAborted,
    TransferError,
    TransferRefused,
    TransferState,
    TransferTimeout,
)
from tests.kvtransfer.conftest import Pair, make_layers, split

N = 40_000


async def test_layers_arrive_intact_across_different_segment_boundaries(pair: Pair) -> None:
    layout, src = make_layers(3, N)
    dst = [bytearray(N) for _ in src]
    rx = pair.receiver.expect("t1", layout, [split(d, [7, 9000, 25_001]) for d in dst], 10)
    tx = pair.sender.open(pair.peer, "t1", layout, b"meta")
    for i, buf in enumerate(src):
        # Two pieces per layer, the second one first (chunked prefill may add in any order).
        tx.add(i, split(buf, [100])[1:] and [memoryview(buf)[20_000:]], offset=20_000)
        tx.add(i, split(bytearray(), []) or [memoryview(buf)[:20_000]], offset=0)
        await rx.wait_layer(i)
        assert dst[i] == src[i]
    tx.finish(b"first-token=17")
    assert await rx.wait_done() == b"first-token=17"
    await tx.wait_done()
    assert rx.state == tx.state == TransferState.DONE
    assert rx.metadata == b"meta" and rx.dest is None
    pair.assert_no_leaks()


async def test_concurrent_transfers_share_the_link_and_both_finish(pair: Pair) -> None:
    layout, src = make_layers(4, N)
    handles = []
    for tid in ("a", "b"):
        dst = [bytearray(N) for _ in src]
        rx = pair.receiver.expect(tid, layout, [[memoryview(d)] for d in dst], 10)
        tx = pair.sender.open(pair.peer, tid, layout)
        for i, buf in enumerate(src):
            tx.add(i, [memoryview(buf)])
        tx.finish()
        handles.append((rx, tx, dst))
    for rx, tx, dst in handles:
        await rx.wait_done()
        await tx.wait_done()
        assert dst == src
    pair.assert_no_leaks()


async def test_add_threadsafe_from_a_producer_thread(pair: Pair) -> None:
    layout, src = make_layers(3, N)
    dst = [bytearray(N) for _ in src]
    rx = pair.receiver.expect("t", layout, [[memoryview(d)] for d in dst], 10)
    tx = pair.sender.open(pair.peer, "t", layout)

    def produce() -> None:
        for i, buf in enumerate(src):
            tx.add_threadsafe(i, [memoryview(buf)])
        tx.finish_threadsafe(b"x")

    thread = threading.Thread(target=produce)
    thread.start()
    assert await rx.wait_done() == b"x"
    await tx.wait_done()
    thread.join()
    assert dst == src
    pair.assert_no_leaks()


async def test_unknown_transfer_is_refused(pair: Pair) -> None:
    layout, src = make_layers(1, N)
    tx = pair.sender.open(pair.peer, "nobody-expects-me", layout)
    tx.add(0, [memoryview(src[0])])
    tx.finish()
    with pytest.raises(TransferRefused):
        await asyncio.wait_for(tx.wait_done(), 5)
    assert tx.state == TransferState.FAILED
    pair.assert_no_leaks()


async def test_duplicate_expect_is_refused(pair: Pair) -> None:
    layout, _ = make_layers(1, N)
    rx = pair.receiver.expect("dup", layout, [[memoryview(bytearray(N))]], 10)
    with pytest.raises(TransferRefused):
        pair.receiver.expect("dup", layout, [[memoryview(bytearray(N))]], 10)
    rx.abort("test over")
    pair.assert_no_leaks()


async def test_layout_mismatch_is_refused_and_nothing_installed(pair: Pair) -> None:
    layout, src = make_layers(2, N)
    rx = pair.receiver.expect("m", layout, [[memoryview(bytearray(N))] for _ in src], 10)
    other = [[("k", "fp32", N)] for _ in src]
    tx = pair.sender.open(pair.peer, "m", other)
    with pytest.raises(TransferRefused):
        await asyncio.wait_for(tx.wait_done(), 5)
    with pytest.raises(TransferError):
        await rx.wait_done()
    assert rx.dest is None
    pair.assert_no_leaks()


async def test_sender_abort_reaches_the_receiver(pair: Pair) -> None:
    layout, src = make_layers(3, N)
    rx = pair.receiver.expect("ab", layout, [[memoryview(bytearray(N))] for _ in src], 10)
    tx = pair.sender.open(pair.peer, "ab", layout)
    tx.add(0, [memoryview(src[0])])
    await rx.wait_layer(0)
    tx.abort("client went away")
    with pytest.raises(TransferAborted):
        await asyncio.wait_for(rx.wait_done(), 5)
    assert rx.state == TransferState.ABORTED and rx.dest is None
    with pytest.raises(TransferAborted):
        await tx.wait_done()
    pair.assert_no_leaks()


async def test_receiver_abort_reaches_the_sender(pair: Pair) -> None:
    layout, src = make_layers(3, N)
    rx = pair.receiver.expect("rab", layout, [[memoryview(bytearray(N))] for _ in src], 10)
    tx = pair.sender.open(pair.peer, "rab", layout)
    tx.add(0, [memoryview(src[0])])
    await rx.wait_layer(0)
    rx.abort("decode worker preempted")
    with pytest.raises(TransferError):
        await asyncio.wait_for(tx.wait_done(), 5)
    assert tx.add(1, [memoryview(src[1])]) is False
    pair.assert_no_leaks()


async def test_receiver_deadline_fails_and_drops_buffers(pair: Pair) -> None:
    layout, src = make_layers(2, N)
    rx = pair.receiver.expect("slow", layout, [[memoryview(bytearray(N))] for _ in src], 0.3)
    tx = pair.sender.open(pair.peer, "slow", layout)
    tx.add(0, [memoryview(src[0])])
    with pytest.raises(TransferTimeout):
        await asyncio.wait_for(rx.wait_done(), 5)
    assert rx.state == TransferState.FAILED and rx.dest is None
    with pytest.raises(TransferError):
        await asyncio.wait_for(tx.wait_done(), 5)
    pair.assert_no_leaks()


async def test_receiver_closing_fails_the_sender_fast(pair: Pair) -> None:
    layout, src = make_layers(2, N)
    rx = pair.receiver.expect("rd", layout, [[memoryview(bytearray(N))] for _ in src], 10)
    tx = pair.sender.open(pair.peer, "rd", layout)
    tx.add(0, [memoryview(src[0])])
    await rx.wait_layer(0)
    await pair.receiver.close()
    with pytest.raises((PeerLost, TransferError)):
        await asyncio.wait_for(tx.wait_done(), 2)
    pair.assert_no_leaks()


async def test_bad_add_is_rejected(pair: Pair) -> None:
    layout, src = make_layers(1, N)
    rx = pair.receiver.expect("bad", layout, [[memoryview(bytearray(N))]], 10)
    tx = pair.sender.open(pair.peer, "bad", layout)
    with pytest.raises(ValueError):
        tx.add(0, [memoryview(src[0])], offset=1)
    tx.add(0, [memoryview(src[0])[:100]])
    with pytest.raises(ValueError):
        tx.add(0, [memoryview(src[0])[50:200]], offset=50)
    with pytest.raises(ValueError):
        tx.finish()
    tx.abort("done testing")
    with pytest.raises(TransferAborted):
        await asyncio.wait_for(rx.wait_done(), 5)
    pair.assert_no_leaks()
