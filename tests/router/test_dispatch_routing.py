"""Dispatcher routing over fake gRPC workers: which flow each policy runs, and the wire calls."""

from __future__ import annotations

import uuid

from fake_workers import FakeCluster, start_cluster

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.router.generation_backend import GenerationFinished, GenerationRequest
from prfaas.router.policy import Reason, RouteDecision, Target
from prfaas.router.prefix_index import block_hashes
from prfaas.sampling import SamplingParams


async def run(c: FakeCluster, prompt: list[int], max_tokens: int = 4):
    req = GenerationRequest(uuid.uuid4().hex, tuple(prompt), SamplingParams(max_tokens=max_tokens))
    decisions, tokens, finished = [], [], None
    async for item in c.dispatcher.generate_routed(req):
        if isinstance(item, RouteDecision):
            decisions.append(item)
        elif isinstance(item, GenerationFinished):
            finished = item
        else:
            tokens.extend(item.token_ids)
    return req, decisions, tokens, finished


async def test_prfaas_policy_offloads_long_and_keeps_short_local() -> None:
    c = await start_cluster(threshold=64)
    try:
        _, (short,), tokens, fin = await run(c, list(range(10)))
        assert (short.target, short.reason) == (Target.LOCAL, Reason.SHORT)
        # Short local on PD-P/PD-D: PD-P prefills, ships to PD-D's *direct* KV address.
        (pp,) = c.worker("pd-0").prefill_requests
        assert (pp.destination.host, pp.destination.port) == ("10.0.0.1", 7000)
        assert tokens == [97, 98, 99, 100] and fin is not None and fin.finish_reason == "length"

        req, (long_d,), tokens, fin = await run(c, list(range(200)), max_tokens=3)
        assert (long_d.target, long_d.reason) == (Target.PRFAAS, Reason.OFFLOADED)
        (rp,) = c.worker("prfaas-0").prefill_requests
        assert rp.request_id == f"{req.request_id}.0" and len(rp.prompt_ids) == 200
        # The PrfaaS sender reaches PD-D through the link (relay) address.
        assert (rp.destination.host, rp.destination.port) == ("10.9.0.1", 7400)
        gen = c.worker("pd-1").generate_requests[-1]
        assert gen.kv_source.transfer_id == rp.destination.transfer_id
        assert gen.kv_source.sender_id == "prfaas-0"
        assert tokens == [97, 98, 99] and fin.usage.completion_tokens == 3
    finally:
        await c.close()


async def test_prefix_hit_keeps_long_prompt_local() -> None:
    c = await start_cluster(threshold=64)
    try:
        prompt = list(range(200))
        c.worker("pd-0").store_blocks(block_hashes(prompt, 16)[:10])  # 160 cached tokens
        for _ in range(100):
            if c.registry.index.match_tokens(prompt).cluster_tokens("pd") == 160:
                break
            await c.registry.heartbeat_once(c.registry.get("pd-0"))
        _, (d,), _, fin = await run(c, prompt)
        assert (d.target, d.reason, d.cached_tokens) == (Target.LOCAL, Reason.PREFIX_HIT, 160)
        assert fin.usage.cached_tokens == 160
        assert fin.usage.prefill_cluster == "pd"  # who served the cache, for bench serve's report
    finally:
        await c.close()


async def test_router_predicts_no_hit_past_the_last_checkpoint_a_worker_holds() -> None:
    """Sparse checkpoints (prfaas/checkpoint_rule.py): the registry applies checkpoint-only events,
    so the predicted hit ends at the deepest checkpoint still held, never at the last KV block."""
    c = await start_cluster(threshold=150)  # 200 - 64 uncached tokens stay local
    try:
        prompt = list(range(200))
        hashes = block_hashes(prompt, 16)[:10]
        # KV for 10 blocks, checkpoints after block 4 (an interval) and block 10 (a prompt end).
        w = c.worker("pd-0")
        w.store_blocks(hashes, checkpoint=False)
        ev = worker_pb2.CacheEvent
        batch = [ev(kind=ev.CHECKPOINT_STORED, block_hash=hashes[i], block_index=i) for i in (3, 9)]
        w.cache_events.put_nowait(worker_pb2.CacheEventBatch(worker_id="pd-0", events=batch))

        async def predicted(tokens: int) -> int:
            for _ in range(100):
                got = c.registry.index.match_tokens(prompt).cluster_tokens("pd")
                if got == tokens:
                    break
                await c.registry.heartbeat_once(c.registry.get("pd-0"))
            return got

        assert await predicted(160) == 160
        # The LRU takes the prompt-end state before its blocks: the hit falls back to block 4.
        gone = ev(kind=ev.CHECKPOINT_EVICTED, block_hash=hashes[9], block_index=9)
        w.cache_events.put_nowait(worker_pb2.CacheEventBatch(worker_id="pd-0", events=[gone]))
        assert await predicted(64) == 64
        _, (d,), _, fin = await run(c, prompt)
        assert (d.target, d.reason, d.cached_tokens) == (Target.LOCAL, Reason.PREFIX_HIT, 64)
    finally:
        await c.close()


async def test_homogeneous_pd_never_offloads() -> None:
    c = await start_cluster(policy="homogeneous-pd", threshold=64)
    try:
        for n in (10, 500):
            _, (d,), tokens, _ = await run(c, list(range(n)))
            assert (d.target, d.reason) == (Target.LOCAL, Reason.POLICY_LOCAL)
            assert len(tokens) == 4
        assert c.worker("prfaas-0").prefill_requests == []
        assert len(c.worker("pd-0").prefill_requests) == 2
    finally:
        await c.close()


async def test_mixed_worker_runs_local_flow() -> None:
    c = await start_cluster(pd_roles=("mixed",), num_prfaas=0, policy="homogeneous-pd")
    try:
        c.worker("pd-0").script.num_cached_tokens = 5
        _, (d,), tokens, fin = await run(c, list(range(30)))
        assert d.prefill_worker == d.decode_worker == "pd-0"
        (gen,) = c.worker("pd-0").generate_requests
        assert not gen.HasField("kv_source") and c.worker("pd-0").prefill_requests == []
        assert tokens == [97, 98, 99, 100] and fin.usage.cached_tokens == 5
    finally:
        await c.close()


async def test_naive_hetero_offloads_everything() -> None:
    c = await start_cluster(policy="naive-hetero", threshold=1_000_000)
    try:
        for n in (3, 300):
            _, (d,), tokens, _ = await run(c, list(range(n)))
            assert (d.target, d.reason) == (Target.PRFAAS, Reason.POLICY_OFFLOAD)
            assert len(tokens) == 4
        assert len(c.worker("prfaas-0").prefill_requests) == 2
        assert c.worker("pd-0").prefill_requests == []
    finally:
        await c.close()


async def test_http_view_filters_decisions_and_ready_tracks_workers() -> None:
    c = await start_cluster()
    try:
        assert c.dispatcher.ready()
        req = GenerationRequest("r1", tuple(range(5)), SamplingParams(max_tokens=2))
        events = [e async for e in c.dispatcher.generate(req)]
        assert not any(isinstance(e, RouteDecision) for e in events)
        assert isinstance(events[-1], GenerationFinished)
        c.registry.get("pd-1").healthy = False
        assert not c.dispatcher.ready()
    finally:
        await c.close()


async def test_admission_cap_refuses_with_retry_after() -> None:
    """Past `max_inflight` requests in flight, a new one is refused (HTTP 429 + Retry-After)
    without touching any worker; once the first finishes, requests are admitted again."""
    import asyncio

    import pytest

    from prfaas.router.generation_backend import Overloaded

    c = await start_cluster(
        pd_roles=("mixed",), num_prfaas=0, policy="homogeneous-pd", max_inflight=1
    )
    try:
        c.worker("pd-0").script.token_delay_s = 0.05
        first = asyncio.ensure_future(run(c, list(range(10)), max_tokens=8))
        while not c.dispatcher._inflight:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await run(c, list(range(10)))
        assert refused.value.retry_after_s > 0 and "limit 1" in str(refused.value)
        _, _, tokens, fin = await first
        assert len(tokens) == 8 and fin is not None
        _, _, tokens, fin = await run(c, list(range(10)))
        assert fin is not None
    finally:
        await c.close()


async def test_concurrent_offloads_spread_over_prfaas_workers_between_heartbeats() -> None:
    """Placement counts the router's own in-flight work, so a burst that arrives between two
    load polls does not herd onto one PrfaaS worker (heartbeats lag by a poll interval)."""
    import asyncio

    c = await start_cluster(num_prfaas=2, threshold=64)
    try:
        for w in ("prfaas-0", "prfaas-1"):
            c.worker(w).script.prefill_mode = "stall"
        tasks = [asyncio.ensure_future(run(c, list(range(i, i + 200)))) for i in range(4)]
        while sum(len(c.worker(w).prefill_requests) for w in ("prfaas-0", "prfaas-1")) < 4:
            await asyncio.sleep(0.01)
        counts = [len(c.worker(w).prefill_requests) for w in ("prfaas-0", "prfaas-1")]
        assert counts == [2, 2]
        assert c.registry.get("prfaas-0").inflight_prefills == 2
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Every attempt gave its counts back.
        for w in c.registry.workers.values():
            assert (w.inflight_prefills, w.inflight_prefill_tokens, w.inflight_decodes) == (0, 0, 0)
    finally:
        await c.close()
