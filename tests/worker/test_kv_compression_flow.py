"""KV compression end to end on the worker flows: a prefill worker ships fp8/int8 KV, a decode-only
request receives it, decodes it into its cache and generates; and a receiver that expects the plain
layout refuses a compressed stream, saying why. Real tiny model, loopback and TCP transports."""

from __future__ import annotations

import asyncio
import random

import pytest

from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore
from prfaas.kvtransfer.base import KVSender
from prfaas.kvtransfer.loopback import LoopbackNetwork, LoopbackReceiver, LoopbackSender
from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from prfaas.model.config import get_preset
from prfaas.model.hybrid import HybridModel
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.generate_flow import Failed, Finished, KvReceived, KvSourceSpec, Tokens, generate
from prfaas.worker.prefill_flow import PrefillFailed, prefill_and_ship

BLOCK = 64
NUM_TOKENS = 6
PARAMS = SamplingParams(temperature=0.0, max_tokens=NUM_TOKENS, ignore_eos=True)
MODEL = HybridModel(get_preset("tiny"))  # shared, read-only weights


def make_compute() -> ComputeLoop:
    def make_engine(hooks) -> EngineCore:  # noqa: ANN001
        backend = TorchBackend(MODEL, block_size=BLOCK)
        return EngineCore(backend, cache_budget_bytes=32 << 20, on_layer_done=hooks)

    loop = ComputeLoop(make_engine)
    loop.start()
    return loop


async def offload(
    prefill: ComputeLoop,
    decode: ComputeLoop,
    sender: KVSender,
    receiver: TcpReceiver | LoopbackReceiver,
    prompt: list[int],
    rid: str,
    *,
    send_as: str,
    receive_as: str,
) -> tuple[list[int], int, list]:
    """One request prefilled on `prefill`, decoded on `decode`; returns (tokens, bytes sent,
    decode-side events)."""
    dreq = Request(rid, list(prompt), PARAMS, kind=RequestKind.DECODE_ONLY)
    source = KvSourceSpec(f"t-{rid}", "", 20.0)
    events: list = []

    async def decode_side() -> None:
        async for ev in generate(
            decode, dreq, receiver=receiver, source=source, kv_compression=receive_as
        ):
            events.append(ev)

    task = asyncio.create_task(decode_side())
    while not events:  # Admitted: the receiver expects the transfer
        await asyncio.sleep(0.005)
    preq = Request(rid, list(prompt), PARAMS, kind=RequestKind.PREFILL_ONLY)
    sent = 0
    try:
        report = await prefill_and_ship(
            prefill, sender, preq, receiver.address, f"t-{rid}", kv_compression=send_as
        )
        sent = report.bytes_sent
    finally:
        await asyncio.wait_for(task, 60)
    tokens = [t for ev in events if isinstance(ev, Tokens) for t in ev.ids]
    return tokens, sent, events


def prompts(n: int) -> list[list[int]]:
    rng = random.Random(11)
    return [[rng.randrange(256) for _ in range(rng.choice([40, 64, 130, 300]))] for _ in range(n)]


@pytest.mark.parametrize("scheme", ["fp8", "int8"])
async def test_decode_worker_decodes_a_compressed_transfer(scheme: str) -> None:
    net = LoopbackNetwork()
    prefill, decode = make_compute(), make_compute()
    sender, receiver = LoopbackSender(net), LoopbackReceiver(net)
    try:
        same = total = 0
        for i, prompt in enumerate(prompts(6)):
            plain, plain_bytes, _ = await offload(
                prefill,
                decode,
                sender,
                receiver,
                prompt,
                f"p{i}",
                send_as="none",
                receive_as="none",
            )
            packed, packed_bytes, events = await offload(
                prefill,
                decode,
                sender,
                receiver,
                prompt,
                f"c{i}",
                send_as=scheme,
                receive_as=scheme,
            )
            assert any(isinstance(ev, Finished) for ev in events), events
            received = next(ev for ev in events if isinstance(ev, KvReceived))
            assert received.num_bytes == packed_bytes
            # tiny is float32: each 64 elements of a KV row (256 bytes) become 64 codes + a 4-byte
            # scale; the linear states travel unchanged.
            kv_plain = len(prompt) * MODEL.config.kv_bytes_per_token
            assert packed_bytes == plain_bytes - kv_plain + kv_plain * 68 // 256
            assert len(packed) == len(plain) == NUM_TOKENS
            assert packed[0] == plain[0], "the first token comes from the (exact) prefill side"
            same += sum(a == b for a, b in zip(plain, packed, strict=True))
            total += len(plain)
        # Greedy agreement with the uncompressed path (BENCHMARKS.md measures it over 200 prompts).
        assert same / total >= 0.8, (same, total)
        for side in (sender, receiver):
            held = {k: v for k, v in side.leak_check().items() if v and "connection" not in k}
            assert not held, held
    finally:
        await sender.close()
        await receiver.close()
        await prefill.stop()
        await decode.stop()


async def test_a_plain_receiver_refuses_a_compressed_stream_and_says_why() -> None:
    receiver = await TcpReceiver(secret=b"s", open_grace_s=0.3).start()
    sender = TcpSender(secret=b"s", num_connections=2)
    prefill, decode = make_compute(), make_compute()
    try:
        with pytest.raises(PrefillFailed) as refused:
            await offload(
                prefill,
                decode,
                sender,
                receiver,
                prompts(1)[0],
                "r",
                send_as="fp8",
                receive_as="none",
            )
        # Both sides name the encoded dtype the sender declared and the one the receiver expects.
        assert "kvq1:fp8:g64:float32" in str(refused.value)
        assert "expects L03.kv as float32" in str(refused.value)
    finally:
        await sender.close()
        await receiver.close()
        await prefill.stop()
        await decode.stop()


async def test_decode_side_reports_the_refusal() -> None:
    net = LoopbackNetwork()
    sender, receiver = LoopbackSender(net), LoopbackReceiver(net)
    prefill, decode = make_compute(), make_compute()
    dreq = Request("x", prompts(1)[0], PARAMS, kind=RequestKind.DECODE_ONLY)
    try:
        events = []

        async def decode_side() -> None:
            async for ev in generate(
                decode,
                dreq,
                receiver=receiver,
                source=KvSourceSpec("t-x", "", 5.0),
                kv_compression="int8",
            ):
                events.append(ev)

        task = asyncio.create_task(decode_side())
        while not events:
            await asyncio.sleep(0.005)
        preq = Request("x", prompts(1)[0], PARAMS, kind=RequestKind.PREFILL_ONLY)
        with pytest.raises(PrefillFailed):
            await prefill_and_ship(prefill, sender, preq, receiver.address, "t-x")
        await asyncio.wait_for(task, 30)
        failed = [ev for ev in events if isinstance(ev, Failed)]
        assert failed and failed[0].code == "kv_transfer_failed", events
        assert "kvq1:int8:g64:float32" in failed[0].message
    finally:
        await sender.close()
        await receiver.close()
        await prefill.stop()
        await decode.stop()
