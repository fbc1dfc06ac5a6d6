"""A PD worker refuses a decode-only admission past its seats (issue 17, worker/seat_line.py).

The line for seats counts the running batch, the requests whose KV arrived with every seat taken
(`kv_ready`) and transfers past half their bytes; requests whose prefill is still queued hold no
place in it (issue 12). Checked on a real engine (emulated backend) with KV shipped over the
loopback transport; checks are by event order, never by wall time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from prfaas.engine.backend_emulated import EmulatedBackend
from prfaas.engine.core import EngineCore
from prfaas.kvtransfer.base import TransferState
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender
from prfaas.kvtransfer.receive_handle import ReceiveHandle
from prfaas.planner.profiles import PrefillProfile
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.generate_flow import Admitted, Failed, GenerateEvent, KvSourceSpec, Tokens
from prfaas.worker.generate_flow import generate as generate_flow
from prfaas.worker.prefill_flow import prefill_and_ship
from prfaas.worker.seat_line import SeatLine

BLOCK = 16
PROFILE = PrefillProfile(
    "linear", np.array([1.0, 1e6]), np.array([1e-6, 1e-3]), np.array([64.0, 64e6])
)
PROMPT = [(i * 7 + 1) % 256 for i in range(2 * BLOCK + 3)]
LONG = SamplingParams(max_tokens=100_000, ignore_eos=True)  # holds its seat for the whole test


def _compute(max_num_seqs: int, decode_step_s: float) -> ComputeLoop:
    def make_engine(hooks) -> EngineCore:  # noqa: ANN001
        backend = EmulatedBackend(PROFILE, block_size=BLOCK, decode_step_seconds=decode_step_s)
        return EngineCore(
            backend, cache_budget_bytes=8 << 20, max_num_seqs=max_num_seqs, on_layer_done=hooks
        )

    return ComputeLoop(make_engine)


class Pair:
    """A decode worker with `max_num_seqs` seats and a prefill worker, joined by loopback KV."""

    def __init__(self, max_num_seqs: int, seats: SeatLine) -> None:
        net = LoopbackNetwork()
        self.sender, self.receiver = LoopbackSender(net), LoopbackReceiver(net)
        self.decode, self.prefill = _compute(max_num_seqs, 0.01), _compute(64, 0.0)
        self.seats = seats
        self.streams: dict[str, AsyncIterator[GenerateEvent]] = {}

    async def __aenter__(self) -> Pair:
        self.decode.start()
        self.prefill.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stream in self.streams.values():
            await stream.aclose()  # type: ignore[attr-defined]
        await self.sender.close()
        await self.receiver.close()
        await self.decode.stop()
        await self.prefill.stop()

    async def admit(self, rid: str) -> GenerateEvent:
        """A decode-only request `rid` (transfer id = rid): its first event."""
        req = Request(rid, list(PROMPT), LONG, kind=RequestKind.DECODE_ONLY)
        stream = generate_flow(self.decode, req, receiver=self.receiver,
                               source=KvSourceSpec(rid, "", 30.0), seats=self.seats)  # fmt: skip
        self.streams[rid] = stream
        return await anext(stream)

    async def ship(self, rid: str) -> GenerateEvent:
        """Prefill `rid` and ship its KV; the decode stream's next event (its first token)."""
        req = Request(rid, list(PROMPT), LONG, kind=RequestKind.PREFILL_ONLY)
        await prefill_and_ship(self.prefill, self.sender, req, self.receiver.address, rid)
        stream = self.streams[rid]
        event = await anext(stream)
        while not isinstance(event, Tokens | Failed):  # KvReceived first
            event = await anext(stream)
        return event


async def test_a_decode_only_request_past_the_seats_is_refused_overloaded() -> None:
    async with asyncio.timeout(30), Pair(1, SeatLine(1, slack=0)) as pair:
        assert isinstance(await pair.admit("a"), Admitted)
        assert isinstance(await pair.ship("a"), Tokens)  # a holds the only seat
        refused = await pair.admit("b")
        assert isinstance(refused, Failed) and refused.code == "overloaded", refused
        assert "1 requests hold or are about to need the 1 decode seats" in refused.message


async def test_queued_prefills_hold_no_place_in_line_kv_waiting_for_a_seat_does() -> None:
    async with asyncio.timeout(30), Pair(1, SeatLine(1, slack=1)) as pair:
        assert isinstance(await pair.admit("a"), Admitted)
        assert isinstance(await pair.ship("a"), Tokens)  # running: 1 of 1 seat
        # b and c are admitted while their prefills are not done: they hold no place in line.
        assert isinstance(await pair.admit("b"), Admitted)
        assert isinstance(await pair.admit("c"), Admitted)
        # b's KV arrives with the seat taken: its first token goes out, it waits in kv_ready,
        # and the line (a running + b waiting) reaches max_num_seqs + slack.
        assert isinstance(await pair.ship("b"), Tokens)
        refused = await pair.admit("d")
        assert isinstance(refused, Failed) and refused.code == "overloaded", refused


async def test_a_negative_slack_never_refuses() -> None:
    async with asyncio.timeout(30), Pair(1, SeatLine(1, slack=-1)) as pair:
        assert isinstance(await pair.admit("a"), Admitted)
        assert isinstance(await pair.ship("a"), Tokens)
        assert isinstance(await pair.admit("b"), Admitted)
        assert isinstance(await pair.ship("b"), Tokens)
        assert isinstance(await pair.admit("c"), Admitted)


async def test_a_transfer_past_half_its_bytes_counts_in_the_line() -> None:
    layout = [[("kv", "u8", 100)]]
    handle = ReceiveHandle("t", layout, [[memoryview(bytearray(100))]], 30.0, lambda h: None)
    seats = SeatLine(2, slack=0)
    seats.track("r", handle)
    assert seats.nearly_done() == 0  # registered, its prefill maybe still queued
    handle.begin(layout, b"")
    handle.chunk_received(0, 0, 49, 1, 1)
    assert handle.state is TransferState.TRANSFERRING and seats.nearly_done() == 0
    handle.chunk_received(0, 49, 1, 2, 2)
    assert seats.nearly_done() == 1  # half its bytes in: its prefill is running, past its middle
    assert seats.refusal(with_kv=1, arriving=seats.nearly_done()) is not None
    assert seats.refusal(with_kv=1, arriving=0) is None
    seats.untrack("r")
    assert seats.nearly_done() == 0
    handle.abort("test over")
