"""Capacity accounting of the dispatcher over fake gRPC workers: decode seats are taken when the
KV is complete at the decode worker (not while the prefill waits in a queue)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fake_workers import FakeCluster, start_cluster

from prfaas.router.backend_base import GenerationRequest, Overloaded, SamplingSpec


async def run(c: FakeCluster, prompt: list[int], max_tokens: int = 4) -> list[int]:
    req = GenerationRequest(uuid.uuid4().hex, tuple(prompt), SamplingSpec(max_tokens=max_tokens))
    tokens: list[int] = []
    async for item in c.dispatcher.generate(req):
        tokens.extend(getattr(item, "token_ids", ()))
    return tokens


async def _one_seat_cluster() -> FakeCluster:
    """PD-P + PD-D, the decode worker reporting max_num_seqs = 1; homogeneous-pd placement."""
    c = await start_cluster(policy="homogeneous-pd", num_prfaas=0)
    c.worker("pd-1").script.load = {"max_num_seqs": 1}
    decode = c.registry.get("pd-1")
    while decode.max_decodes != 1:
        await c.registry.heartbeat_once(decode)
    return c


async def test_queued_prefills_hold_no_decode_seat() -> None:
    c = await _one_seat_cluster()
    try:
        c.worker("pd-0").script.prefill_mode = "stall"
        queued = [asyncio.ensure_future(run(c, list(range(i, i + 20)))) for i in range(3)]
        while len(c.worker("pd-0").prefill_requests) < 3:
            await asyncio.sleep(0.01)
        decode = c.registry.get("pd-1")
        # Three requests placed on a one-seat decode worker: none holds its seat yet.
        assert (decode.inflight_decodes, decode.pending_decodes) == (0, 3)
        assert decode.snapshot().load == 0.0 and decode.snapshot().queue_depth >= 3
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        assert (decode.inflight_decodes, decode.pending_decodes) == (0, 0)
    finally:
        await c.close()


async def test_decode_seat_taken_at_first_token_and_full_worker_refuses() -> None:
    c = await _one_seat_cluster()
    try:
        c.worker("pd-1").script.token_delay_s = 0.05
        decoding = asyncio.ensure_future(run(c, list(range(20)), max_tokens=20))
        decode = c.registry.get("pd-1")
        while decode.inflight_decodes == 0:
            await asyncio.sleep(0.005)
        assert decode.pending_decodes == 0
        with pytest.raises(Overloaded, match="no worker has capacity"):
            await run(c, list(range(20)))
        assert len(await decoding) == 20
        assert (decode.inflight_decodes, decode.pending_decodes) == (0, 0)
        assert len(await run(c, list(range(20)))) == 4
    finally:
        await c.close()
