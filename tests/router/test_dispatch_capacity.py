"""Capacity accounting of the dispatcher over fake gRPC workers: decode seats are taken when the
KV is complete at the decode worker (not while the prefill waits in a queue); prefill queues are
bounded by a wait budget (429 + Retry-After up front); a slow local prefill is waited for while its
worker is healthy instead of being re-queued elsewhere."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fake_workers import FakeCluster, start_cluster

from prfaas.router.attempt import FlowTimeouts
from prfaas.router.generation_backend import GenerationRequest, Overloaded
from prfaas.router.policy import RouteDecision
from prfaas.router.prefill_estimate import observe_drain, predicted_prefill_s, predicted_wait_s
from prfaas.router.registry import RegistryConfig, WorkerHandle
from prfaas.sampling import SamplingParams


async def run(c: FakeCluster, prompt: list[int], max_tokens: int = 4) -> list[int]:
    req = GenerationRequest(uuid.uuid4().hex, tuple(prompt), SamplingParams(max_tokens=max_tokens))
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
        # The prefill worker's queue accounting holds the three requests' uncached tokens.
        assert c.registry.get("pd-0").inflight_prefill_tokens == 60
        snap = decode.snapshot()
        assert snap.seats_taken == 0.0 and snap.queue_depth >= 3
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        assert (decode.inflight_decodes, decode.pending_decodes) == (0, 0)
    finally:
        await c.close()


async def test_requests_waiting_for_prefill_spread_over_decode_workers() -> None:
    """Pending requests take no seat but count for ranking: a burst does not herd onto the
    decoder that happens to have the fewest running."""
    c = await start_cluster(pd_roles=("prefill", "decode", "decode"), policy="homogeneous-pd",
                            num_prfaas=0)  # fmt: skip
    try:
        c.worker("pd-0").script.prefill_mode = "stall"
        queued = [asyncio.ensure_future(run(c, list(range(i, i + 20)))) for i in range(4)]
        while len(c.worker("pd-0").prefill_requests) < 4:
            await asyncio.sleep(0.01)
        assert [c.registry.get(w).pending_decodes for w in ("pd-1", "pd-2")] == [2, 2]
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
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


async def test_prefill_queue_past_its_wait_budget_is_refused_with_retry_after() -> None:
    """A measured speed of 1000 tokens/s: 1000-token prompts queue 1 s each."""
    c = await start_cluster(policy="homogeneous-pd", num_prfaas=0, max_prefill_wait_s=1.5)
    try:
        c.registry.get("pd-0").drain_tokens_per_s = 1000.0
        c.worker("pd-0").script.prefill_mode = "stall"
        queued = [asyncio.ensure_future(run(c, list(range(i, i + 1000)))) for i in range(2)]
        while len(c.worker("pd-0").prefill_requests) < 2:
            await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="predicted wait 2.0s exceeds") as refused:
            await run(c, list(range(1000)))
        assert refused.value.retry_after_s == pytest.approx(1.0)
        # Nothing was sent anywhere for the refused request.
        assert len(c.worker("pd-0").prefill_requests) == 2
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        c.worker("pd-0").script.prefill_mode = "ok"
        assert len(await run(c, list(range(1000)))) == 4
    finally:
        await c.close()


async def test_prefill_queues_balanced_by_predicted_wait() -> None:
    """A long prompt on pd-0 makes its predicted wait long: the short ones that follow all go to
    pd-1, although pd-0 holds fewer requests (request counts once put them behind it)."""
    c = await start_cluster(pd_roles=("prefill", "prefill", "decode"), policy="homogeneous-pd",
                            num_prfaas=0)  # fmt: skip
    try:
        for w in ("pd-0", "pd-1"):
            c.worker(w).script.prefill_mode = "stall"
        queued = [asyncio.ensure_future(run(c, list(range(8000))))]
        while len(c.worker("pd-0").prefill_requests) < 1:
            await asyncio.sleep(0.01)
        for i in range(4):
            queued.append(asyncio.ensure_future(run(c, list(range(i, i + 100)))))
            placed = [c.worker(w).prefill_requests for w in ("pd-0", "pd-1")]
            while sum(map(len, placed)) < i + 2:
                await asyncio.sleep(0.01)
        assert [len(c.worker(w).prefill_requests) for w in ("pd-0", "pd-1")] == [1, 4]
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
    finally:
        await c.close()


async def test_no_refusal_before_a_speed_is_measured() -> None:
    """A cold worker's queue at the default speed predicts a wait it cannot back: no 429."""
    c = await start_cluster(policy="homogeneous-pd", num_prfaas=0, max_prefill_wait_s=1.5)
    try:
        c.worker("pd-0").script.prefill_mode = "stall"
        queued = [asyncio.ensure_future(run(c, list(range(i, i + 1000)))) for i in range(3)]
        while len(c.worker("pd-0").prefill_requests) < 3:
            await asyncio.sleep(0.01)
        assert c.registry.get("pd-0").inflight_prefill_tokens == 3000
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
    finally:
        await c.close()


async def test_slow_local_prefill_is_waited_for_not_requeued() -> None:
    """A PD-P prefill that takes 5x its predicted deadline while PD-P stays healthy completes in
    its first attempt (no retry, the prefill computed once)."""
    c = await start_cluster(
        policy="homogeneous-pd", num_prfaas=0, prefill_slack_s=0.1,
        local_prefill_deadline_factor=1.0, timeouts=FlowTimeouts(admit_s=5, token_s=0.1),
    )  # fmt: skip
    try:
        c.worker("pd-0").script.prefill_delay_s = 1.0
        req = GenerationRequest("slow", tuple(range(20)), SamplingParams(max_tokens=4))
        decisions, tokens = [], []
        async for item in c.dispatcher.generate_routed(req):
            if isinstance(item, RouteDecision):
                decisions.append(item)
            else:
                tokens.extend(getattr(item, "token_ids", ()))
        assert len(decisions) == 1 and len(tokens) == 4
        assert len(c.worker("pd-0").prefill_requests) == 1
        # The drain rate was learned from this attempt: 20 tokens in about a second.
        assert 10 < c.registry.get("pd-0").drain_tokens_per_s < 25
    finally:
        await c.close()


async def test_dead_local_prefill_worker_is_still_given_up() -> None:
    """The re-armed check stops as soon as the registry sees the prefill worker gone."""
    c = await start_cluster(
        pd_roles=("prefill", "prefill", "decode"), policy="homogeneous-pd", num_prfaas=0,
        prefill_slack_s=0.1, local_prefill_deadline_factor=1.0,
        timeouts=FlowTimeouts(admit_s=5, token_s=0.1),
        registry_config=RegistryConfig(poll_interval_s=0.05, rpc_timeout_s=0.1, unresponsive_s=0.3),
    )  # fmt: skip
    try:
        for w in ("pd-0", "pd-1"):
            c.worker(w).script.prefill_mode = "stall"
        task = asyncio.ensure_future(run(c, list(range(20))))
        while not any(c.worker(w).prefill_requests for w in ("pd-0", "pd-1")):
            await asyncio.sleep(0.01)
        stalled = next(w for w in ("pd-0", "pd-1") if c.worker(w).prefill_requests)
        other = "pd-1" if stalled == "pd-0" else "pd-0"
        c.worker(other).script.prefill_mode = "ok"
        await asyncio.sleep(0.5)  # several check periods: still waiting on a healthy worker
        assert not task.done() and not c.worker(other).prefill_requests
        c.worker(stalled).script.load_delay_s = 60  # wedged: silent past unresponsive_s
        assert len(await asyncio.wait_for(task, 5)) == 4
        assert len(c.worker(other).prefill_requests) == 1
    finally:
        await c.close()


def test_drain_rate_prediction_learns_from_completed_attempts() -> None:
    w = WorkerHandle("p", "pd", "pd", role=None, grpc_address="")  # type: ignore[arg-type]
    assert predicted_prefill_s(w, 500, default_tokens_per_s=1000) == pytest.approx(0.5)
    w.inflight_prefill_tokens = 3000
    assert predicted_wait_s(w, 1000) == pytest.approx(3.0)
    observe_drain(w, 2000, 4.0)  # the worker really drains 500 tokens/s
    assert predicted_wait_s(w, 1000) == pytest.approx(6.0)
    observe_drain(w, 1000, 1.0)  # one fast sample moves the rate only part of the way
    assert 500 < w.drain_tokens_per_s < 1000
    observe_drain(w, 0, 1.0)
    observe_drain(w, 100, 0.0)
    assert 500 < w.drain_tokens_per_s < 1000


async def test_local_queue_past_its_budget_is_offloaded_instead_of_refused() -> None:
    """prfaas policy, a prompt under t: when the local prefill queue would wait past the budget
    the request is queued on PrfaaS (behind the link) instead of refused (issue 12)."""
    c = await start_cluster(threshold=1e6, max_prefill_wait_s=1.5)
    try:
        c.registry.get("pd-0").drain_tokens_per_s = 1000.0  # measured: 1000-token prompts, 1 s
        c.worker("pd-0").script.prefill_mode = "stall"
        queued = [asyncio.ensure_future(run(c, list(range(i, i + 1000)))) for i in range(2)]
        while len(c.worker("pd-0").prefill_requests) < 2:
            await asyncio.sleep(0.01)
        assert len(await run(c, list(range(1000)))) == 4
        assert len(c.worker("prfaas-0").prefill_requests) == 1
        assert len(c.worker("pd-0").prefill_requests) == 2
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
    finally:
        await c.close()


def test_kv_streaming_on_a_prfaas_worker_is_no_queue() -> None:
    """The router counts an offload on its PrfaaS worker until the KV is complete at decode; on a
    cut link that is seconds of streaming after the compute. With nothing waiting for compute
    there (the worker's report), a prefill placed now starts at once."""
    from prfaas._proto.prfaas.v1 import worker_pb2

    w = WorkerHandle("prfaas-0", "prefill", "prfaas", role=None, grpc_address="")  # type: ignore[arg-type]
    w.inflight_prefill_tokens = 40_000
    w.load = worker_pb2.WorkerLoad(num_waiting=0, num_running=1)
    assert predicted_wait_s(w, 1000) == 0.0
    w.load = worker_pb2.WorkerLoad(num_waiting=1, num_running=1)
    assert predicted_wait_s(w, 1000) == pytest.approx(40.0)
    local = WorkerHandle("pd-0", "pd", "pd", role=None, grpc_address="")  # type: ignore[arg-type]
    local.inflight_prefill_tokens = 40_000
    local.load = worker_pb2.WorkerLoad(num_waiting=0)
    assert predicted_wait_s(local, 1000) == pytest.approx(40.0)  # local: the router's count


def test_wait_from_the_workers_reported_backlog() -> None:
    """A worker that reports its prefill backlog in seconds (a cost model: the emulated profile)
    is predicted from it, less what it computed since it was asked, plus this router's prefills
    placed after that question at the worker's speed; the router's token count is not used."""
    import time

    from prfaas._proto.prfaas.v1 import worker_pb2

    w = WorkerHandle("pd-0", "pd", "pd", role=None, grpc_address="")  # type: ignore[arg-type]
    w.inflight_prefill_tokens = 40_000  # tokens-linear would say 40 s at 1000 tokens/s
    w.drain_tokens_per_s = 1000.0
    now = time.monotonic()
    w.load = worker_pb2.WorkerLoad(prefill_backlog_seconds=12.0)
    w.load_asked_s = now - 2.0  # asked 2 s ago: 2 s of the backlog are computed since
    w.placed_prefills = {1: (now - 5.0, 30_000), 2: (now - 1.0, 3_000)}  # only the second is unseen
    # 10 s of reported backlog left (less the moments this test takes: the age only grows) + 3 s
    # for the unseen 3,000 tokens; the token count (40 s) would be far off either way.
    assert 12.5 < predicted_wait_s(w, 1000) <= 13.0
    assert 13.0 < predicted_prefill_s(w, 500, 1000) <= 13.5
    w.load = worker_pb2.WorkerLoad(prefill_backlog_seconds=0.5)
    w.placed_prefills = {}
    assert predicted_wait_s(w, 1000) == 0.0  # computed since: never below zero
