"""The simulator hands the router's wait budget and decode placement what real workers report:
the engine's prefill backlog at the last poll (aged by the router), and decode seats taken when a
request's KV is complete, not when it is placed (issue 18: homogeneous-pd refused 8x too many)."""

from __future__ import annotations

import pytest

import prfaas.router.prefill_estimate as prefill_estimate
import prfaas.tools.sim.router as sim_router
from prfaas.router.policy import Reason, RouteDecision, Target
from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.decode import DecodeStage, DecodeTiming
from prfaas.tools.sim.prefill import PrefillJob, PrefillStage
from prfaas.tools.sim.profile import ProfileLookup
from prfaas.tools.sim.request import SimRequest
from tests.sim.helpers import config, small_sim


def _req(i: int, tokens: int, output: int = 4) -> SimRequest:
    return SimRequest(index=i, arrival_s=0.0, input_tokens=tokens, output_tokens=output)


def test_the_wait_is_the_routers_own_formula() -> None:
    assert sim_router.wait_from_backlog is prefill_estimate.wait_from_backlog


def test_reported_backlog_is_the_engines_at_the_last_poll() -> None:
    loop = EventLoop()
    lookup = ProfileLookup(config().pd_profile)
    stage = PrefillStage(loop, lookup, max_batched_tokens=2048, poll_s=0.5)
    cost = lookup.chunk_seconds(0, 20_000, True)
    assert cost > 2.0  # the checks below fall inside its prefill
    seen: list[tuple[float, float, float]] = []

    def look() -> None:
        backlog, asked = stage.reported_backlog_s()
        seen.append((loop.now, backlog, asked))

    loop.at(0.2, stage.submit, PrefillJob(_req(0, 20_000), lambda job, f: None))
    for t in (0.3, 0.6, 1.7):
        loop.at(t, look)
    loop.run_until(1.8)
    # Polled at 0.0 (nothing held), 0.5 and 1.5 (the prompt, computed down since 0.2).
    assert seen[0] == (0.3, 0.0, 0.0)
    assert seen[1][1:] == pytest.approx((cost - 0.3, 0.5))
    assert seen[2][1:] == pytest.approx((cost - 1.3, 1.5))


def test_router_ages_the_report_and_adds_what_it_placed_since() -> None:
    sim, reqs = small_sim(n=1, policy="homogeneous-pd")
    inst = next(i for i in sim.instances.values() if i.is_prefill)
    router = sim.router
    stage = inst.prefill
    stage.busy_s, stage.tokens_computed = 2.0, 10_000  # a measured speed

    def place(tokens: int) -> None:
        req = _req(7, tokens)
        req.prefill_worker = inst.worker_id
        decision = RouteDecision(Target.LOCAL, Reason.POLICY_LOCAL, inst.worker_id, "pd-9", 0,
                                 tokens)  # fmt: skip
        router.placed(req, decision, sim.loop.now)
        stage.submit(PrefillJob(req, lambda job, f: None))

    sim.loop.at(0.6, place, 3_000)
    waits: list[tuple[float, bool]] = []
    speeds: list[float] = []

    def look() -> None:
        waits.append(router.predicted_wait_s(inst))
        speeds.append(stage.tokens_computed / stage.busy_s)  # what the worker reports

    for t in (0.7, 1.2):
        sim.loop.at(t, look)
    sim.loop.run_until(1.3)
    # 0.7: placed after the 0.5 poll, so counted at the worker's speed; 1.2: the 1.0 poll has
    # the prompt in its backlog (what the engine held then), aged 0.2 s.
    assert waits[0] == (pytest.approx(3_000 / speeds[0]), True)
    held = stage.backlog_at(1.0)
    assert held > 0.2
    assert waits[1] == (pytest.approx(held - 0.2), True)


def test_decode_seats_are_taken_when_the_kv_is_complete() -> None:
    loop = EventLoop()
    stage = DecodeStage(loop, DecodeTiming(step_s=0.1), max_batch=2, kv_budget_tokens=10**6)
    reqs = [_req(i, 100) for i in range(3)]
    for r in reqs:
        stage.reserve(r)
    assert stage.seats_taken == 0.0 and stage.load == 1.5  # placed, none seated
    for r in reqs:
        stage.kv_arrived(r)
    assert stage.running == 2 and list(stage.kv_ready) == [reqs[2]]
    assert stage.seats_taken == 1.5
    loop.run_until(10.0)
    # The third decodes once a seat is free; its first token went out when its KV was ready.
    assert reqs[2].decode_join_s == reqs[0].finish_s
    assert reqs[2].first_token_s < reqs[2].decode_join_s
    assert stage.idle and stage.seats_taken == 0.0


def test_homogeneous_pd_overload_is_refused_by_the_wait_budget() -> None:
    """Saturated PD-P queues: the router refuses on the predicted wait (as the deployment does,
    10 of 569 at 0.9 Λ), no longer because queued prefills filled the decode seats."""
    sim, reqs = small_sim(n=400, rate=4.0, policy="homogeneous-pd")
    result = sim.run(reqs)
    refused = [r for r in result.requests if r.error]
    assert refused
    assert {r.route for r in refused} == {"homogeneous-pd/refused/prefill_wait"}
    assert all("predicted wait" in (r.error or "") for r in refused)
    decoders = [i.decode for i in sim.instances.values() if not i.is_prefill]
    assert all(d.idle for d in decoders)
