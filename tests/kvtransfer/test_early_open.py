"""A sender's OPEN that arrives before the receiver expects the transfer (the router starts a
prefill together with the decode admission, issue 12): it waits for `expect`, the whole admission
long; a sender that gives up meanwhile frees it at once; a late OPEN for a transfer that already
ended is refused at once."""

from __future__ import annotations

import asyncio
import contextlib

from prfaas.kvtransfer.base import TransferError
from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.kvtransfer.telemetry import line_backlog_bytes
from prfaas.router.attempt import FlowTimeouts
from tests.kvtransfer.conftest import SECRET, make_layers

N = 30_000


async def _until(cond, timeout_s: float = 2.0) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.005)


def test_the_default_grace_outlasts_the_router_admission_wait() -> None:
    assert TcpReceiver(secret=SECRET).open_grace_s > FlowTimeouts().admit_s


async def test_an_open_before_expect_waits_for_it_and_the_transfer_completes() -> None:
    rx_side = await TcpReceiver(secret=SECRET).start()
    tx_side = TcpSender(secret=SECRET, num_connections=2, chunk_mib=1 / 64)
    try:
        layout, src = make_layers(2, N)
        tx = tx_side.open(rx_side.address, "early", layout)
        for i, buf in enumerate(src):
            tx.add(i, [memoryview(buf)])
        tx.finish(b"trailer")
        await _until(lambda: rx_side._pending_open)  # the OPEN arrived and waits
        await asyncio.sleep(0.3)  # the decode worker admits later (its step, its memory)
        # Meanwhile the KV waits for OPEN_OK, not for the line: no backlog the router would read
        # as a saturated link (issue 12's 2x-link run measured 0.5 Gbit/s at 0.12 from one).
        (peer,) = tx_side.snapshot()
        assert peer.queued_bytes == peer.held_bytes == 2 * N
        assert line_backlog_bytes([peer]) == 0
        dst = [bytearray(N) for _ in src]
        rx = rx_side.expect("early", layout, [[memoryview(d)] for d in dst], 10)
        assert await asyncio.wait_for(rx.wait_done(), 5) == b"trailer"
        await asyncio.wait_for(tx.wait_done(), 5)
        assert dst == src
        assert all(p.held_bytes == p.queued_bytes == 0 for p in tx_side.snapshot())
    finally:
        await tx_side.close()
        await rx_side.close()
    assert not rx_side._pending_open


async def test_a_sender_that_gives_up_frees_its_waiting_open_at_once() -> None:
    rx_side = await TcpReceiver(secret=SECRET, open_grace_s=60).start()
    tx_side = TcpSender(secret=SECRET, num_connections=1, chunk_mib=1 / 64)
    try:
        layout, _ = make_layers(1, N)
        tx = tx_side.open(rx_side.address, "gone", layout)
        await _until(lambda: rx_side._pending_open)
        tx.abort("prefill side gave up")  # the router cancelled: decode admission refused
        await _until(lambda: not rx_side._pending_open and rx_side.leak_check()["tasks"] == 0)
    finally:
        await tx_side.close()
        await rx_side.close()


async def test_a_late_open_for_an_ended_transfer_is_refused_at_once() -> None:
    rx_side = await TcpReceiver(secret=SECRET, open_grace_s=60).start()
    tx_side = TcpSender(secret=SECRET, num_connections=1, chunk_mib=1 / 64)
    try:
        layout, src = make_layers(1, N)
        rx = rx_side.expect("late", layout, [[memoryview(bytearray(N))]], 0.05)
        with contextlib.suppress(TransferError):  # its deadline ends it
            await rx.wait_done()
        tx = tx_side.open(rx_side.address, "late", layout)
        tx.add(0, [memoryview(src[0])])
        tx.finish(b"")
        try:
            await asyncio.wait_for(tx.wait_done(), 2)
        except TimeoutError:
            raise AssertionError("the late OPEN waited instead of being refused") from None
        except Exception as exc:  # noqa: BLE001
            assert "ended" in str(exc)
        else:
            raise AssertionError("a transfer that had ended was accepted")
    finally:
        await tx_side.close()
        await rx_side.close()
