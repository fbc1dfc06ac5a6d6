"""The prefill→decode handshake (router/two_worker_handshake.py) against fake workers: Prefill
starts together with the decode worker's admission (its KV waits for the registration, as a real
receiver holds an early OPEN), at the address and transfer id the decode worker registered; an
admission that is refused or never comes cancels the prefill (issue 12)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from fake_workers import FakePDWorker, FakePrefillWorker, KvHub, serve

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.router.two_worker_handshake import TwoWorkerHandshake, first_event

KV_ADDRESS = ("10.0.0.1", 7000)


PREFILL_SEEN: list[FakePrefillWorker] = []
"""The fake prefill worker of the running test (the decode fakes below wait for its call)."""


async def _prefill_called() -> None:
    while not PREFILL_SEEN[-1].prefill_requests:
        await asyncio.sleep(0.005)


class SlowAdmitDecode(FakePDWorker):
    """Admits only once the prefill call has reached the prefill worker (a decode worker waiting
    for its step or for memory), and records that order."""

    admitted_after_prefill: bool = False

    async def Generate(self, request, context):  # noqa: ANN001, ANN201, N802
        await _prefill_called()
        self.admitted_after_prefill = True
        async for event in super().Generate(request, context):
            yield event


class RefusingDecode(FakePDWorker):
    """Answers every Generate with an `overloaded` error instead of `Admitted` (once the prefill
    call is in flight, so its cancellation is observable)."""

    async def Generate(self, request, context):  # noqa: ANN001, ANN201, N802
        self.generate_requests.append(request)
        await _prefill_called()
        yield worker_pb2.GenerateEvent(error=worker_pb2.WorkerError(code="overloaded"))


class SilentDecode(FakePDWorker):
    """Never sends a first event (the caller's admission wait times out)."""

    async def Generate(self, request, context):  # noqa: ANN001, ANN201, N802
        self.generate_requests.append(request)
        await asyncio.sleep(3600)
        yield worker_pb2.GenerateEvent()


@contextlib.asynccontextmanager
async def _workers(
    decode_class: type[FakePDWorker] = FakePDWorker,
) -> AsyncIterator[tuple[FakePDWorker, FakePrefillWorker, list[grpc.aio.Channel]]]:
    hub = KvHub()
    decode = decode_class("pd-1", "decode", hub, [f"{KV_ADDRESS[0]}:{KV_ADDRESS[1]}"])
    prefill = FakePrefillWorker("prfaas-0", hub)
    PREFILL_SEEN.append(prefill)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{await serve(w)}") for w in (decode, prefill)]
    try:
        yield decode, prefill, channels
    finally:
        for ch in channels:
            await ch.close()
        await decode.stop()
        await prefill.stop()


def _handshake(
    channels: list[grpc.aio.Channel], destination: tuple[str, int]
) -> TwoWorkerHandshake:
    request = worker_pb2.GenerateRequest(
        request_id="r-1", prompt_ids=[5, 6, 7],
        sampling=common_pb2.SamplingParams(max_tokens=3, ignore_eos=True),
    )  # fmt: skip
    decode, prefill = (worker_pb2_grpc.WorkerStub(ch) for ch in channels)
    return TwoWorkerHandshake(decode, prefill, request, "prfaas-0", destination,
                              kv_deadline_s=5, prefill_timeout_s=5, decode_timeout_s=5)  # fmt: skip


async def test_prefill_runs_with_admission_and_the_first_token_comes_through_decode() -> None:
    async with _workers(SlowAdmitDecode) as (decode, prefill, channels):
        hs = _handshake(channels, KV_ADDRESS)
        first = await hs.open(first_event)
        assert first.WhichOneof("event") == "admitted"
        assert isinstance(decode, SlowAdmitDecode) and decode.admitted_after_prefill
        assert hs.call is not None and hs.prefill_call is not None
        tokens = [
            t for ev in [ev async for ev in hs.call] if ev.HasField("tokens") for t in ev.tokens.ids
        ]
        result = await hs.prefill_call
        assert tokens[0] == result.first_token == prefill.first_token()
        assert len(tokens) == 3
        (gen,) = decode.generate_requests
        (pre,) = prefill.prefill_requests
        assert gen.kv_source.transfer_id == pre.destination.transfer_id == hs.transfer_id
        assert gen.kv_source.sender_id == "prfaas-0" and gen.kv_source.deadline_seconds == 5
        assert (pre.destination.host, pre.destination.port) == KV_ADDRESS
        assert pre.request_id == gen.request_id and list(pre.prompt_ids) == [5, 6, 7]
        assert prefill.prefills_cancelled == []


async def _cancelled(prefill: FakePrefillWorker) -> None:
    """The prefill call is cancelled well before its own 5 s deadline would end it."""
    async with asyncio.timeout(2):
        while not prefill.prefills_cancelled:
            await asyncio.sleep(0.005)


async def test_a_refused_admission_cancels_the_prefill() -> None:
    async with _workers(RefusingDecode) as (decode, prefill, channels):
        prefill.script.prefill_delay_s = 30  # still computing when the refusal comes
        hs = _handshake(channels, KV_ADDRESS)
        first = await hs.open(first_event)
        assert first.error.code == "overloaded" and len(decode.generate_requests) == 1
        assert hs.prefill_call is None and len(prefill.prefill_requests) == 1
        await _cancelled(prefill)
        assert prefill.prefills_cancelled == ["r-1"]


async def test_an_admission_wait_that_fails_cancels_the_prefill() -> None:
    async with _workers(SilentDecode) as (decode, prefill, channels):
        prefill.script.prefill_delay_s = 30

        async def impatient(call: grpc.aio.UnaryStreamCall) -> worker_pb2.GenerateEvent:
            await _prefill_called()
            return await asyncio.wait_for(first_event(call), 0.2)

        hs = _handshake(channels, KV_ADDRESS)
        with pytest.raises(TimeoutError):
            await hs.open(impatient)
        assert hs.prefill_call is None and len(decode.generate_requests) == 1
        await _cancelled(prefill)
        assert prefill.prefills_cancelled == ["r-1"]
