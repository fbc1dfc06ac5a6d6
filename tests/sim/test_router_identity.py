"""The simulator runs the router's own decision code: the objects it calls are the router's."""

from __future__ import annotations

import prfaas.router.control as control
import prfaas.router.policy as policy
import prfaas.router.prefix_index as prefix_index
import prfaas.tools.sim.cache as sim_cache
import prfaas.tools.sim.router as sim_router
import prfaas.tools.sim.simulation as simulation
from prfaas.engine.prefix_cache import PrefixCache


def test_route_and_controllers_are_the_router_objects() -> None:
    assert sim_router.route is policy.route
    assert sim_router.PrefixIndex is prefix_index.PrefixIndex
    assert simulation.ShortTermController is control.ShortTermController
    assert simulation.LongTermController is control.LongTermController
    assert sim_cache.PrefixCache is PrefixCache


def test_a_simulation_calls_route_for_every_request(monkeypatch) -> None:  # noqa: ANN001
    from tests.sim.helpers import small_sim

    calls = []
    real = policy.route

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(sim_router, "route", spy)
    sim, requests = small_sim(n=30)
    result = sim.run(requests)
    assert len(calls) == 30
    assert [c.num_prompt_tokens for c in calls] == [r.input_tokens for r in result.requests]
    # Its controllers are live router objects, and their state is what the timeline shows.
    assert isinstance(sim.router.short, control.ShortTermController)
    assert result.timeline[-1]["threshold_tokens"] == sim.router.short.threshold


def test_the_short_law_gets_the_routers_recent_arrivals() -> None:
    """ControlLoops.telemetry's feed-forward inputs: the lengths routed in the last 30 s, each
    with its seconds on a local PD-P worker, the KV bytes the PrfaaS workers ship, the local
    PD-P count (the sim left them empty, so the law's feed-forward and raise cap never acted)."""
    from tests.sim.helpers import small_sim

    sim, requests = small_sim(n=120, rate=2.5)
    sim.run(requests, until_s=40.0)
    tel = sim.router.telemetry(1.0)
    placed = [r.input_tokens for r in requests if 10.0 < r.arrival_s <= 40.0 and not r.error]
    assert placed and tel.arrivals.tokens.tolist() == placed
    assert (tel.arrivals.prefill_s > 0).all()
    assert tel.arrivals.window_s == 30.0 and tel.kv_bytes_per_token > 0
    local = [i for i in sim.instances.values() if i.cluster == "local" and i.is_prefill]
    assert tel.local_prefill_workers == len(local) > 0
