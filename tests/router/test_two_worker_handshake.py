"""The prefill→decode handshake (router/two_worker_handshake.py) against fake workers: Prefill
starts only after the decode worker's Admitted (the fake prefill refuses an unregistered transfer),
at the address and transfer id the decode worker registered."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from fake_workers import FakePDWorker, FakePrefillWorker, KvHub, serve

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.router.two_worker_handshake import TwoWorkerHandshake, first_event

KV_ADDRESS = ("10.0.0.1", 7000)


class RefusingDecode(FakePDWorker):
    """Answers every Generate with an `overloaded` error instead of `Admitted`."""

    async def Generate(self, request, context):  # noqa: ANN001, ANN201, N802
        self.generate_requests.append(request)
        yield worker_pb2.GenerateEvent(error=worker_pb2.WorkerError(code="overloaded"))


@contextlib.asynccontextmanager
async def _workers(
    decode_class: type[FakePDWorker] = FakePDWorker,
) -> AsyncIterator[tuple[FakePDWorker, FakePrefillWorker, list[grpc.aio.Channel]]]:
    hub = KvHub()
    decode = decode_class("pd-1", "decode", hub, [f"{KV_ADDRESS[0]}:{KV_ADDRESS[1]}"])
    prefill = FakePrefillWorker("prfaas-0", hub)
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


async def test_prefill_follows_admission_and_the_first_token_comes_through_decode() -> None:
    async with _workers() as (decode, prefill, channels):
        hs = _handshake(channels, KV_ADDRESS)
        first = await hs.open(first_event)
        assert first.WhichOneof("event") == "admitted"
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


async def test_no_prefill_when_the_decode_worker_does_not_admit() -> None:
    async with _workers(RefusingDecode) as (decode, prefill, channels):
        hs = _handshake(channels, KV_ADDRESS)
        first = await hs.open(first_event)
        assert first.error.code == "overloaded" and len(decode.generate_requests) == 1
        assert hs.prefill_call is None and prefill.prefill_requests == []
