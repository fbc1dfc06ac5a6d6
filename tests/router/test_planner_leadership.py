"""One planner leader among router replicas: the lease the smallest-id PD worker arbitrates
(prfaas/router/planner_leadership.py), over fake workers serving the real lease logic. Two
`WorkerArbitratedLeadership`s over the same workers stand for two router replicas."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from fake_workers import start_cluster
from test_planner_inputs import _model

from prfaas.roles import Role
from prfaas.router.control import LongTermController
from prfaas.router.control.long_term import LongTermDecision, RoleChange
from prfaas.router.control_loops import ControlLoops
from prfaas.router.planner_leadership import WorkerArbitratedLeadership, router_holder_id
from prfaas.router.policy import WorkerSnapshot


def _replicas(registry: Any, ttl_s: float = 60.0) -> tuple[WorkerArbitratedLeadership, ...]:
    return tuple(WorkerArbitratedLeadership(registry, "pd", h, ttl_s) for h in ("A", "B"))


async def test_one_replica_leads_until_it_releases() -> None:
    c = await start_cluster(pd_roles=("prefill", "decode", "decode"))
    try:
        a, b = _replicas(c.registry)
        assert await a.held() and not await b.held()
        assert a.arbiter == b.arbiter == "pd-0"  # the smallest id both see
        assert await a.held() and not await b.held()  # renewals keep it
        await a.release()
        assert await b.held() and not await a.held()
    finally:
        await c.close()


async def test_a_leader_that_stops_renewing_is_replaced_after_its_lease() -> None:
    c = await start_cluster()
    try:
        a, b = _replicas(c.registry, ttl_s=0.3)
        assert await a.held() and not await b.held()
        await asyncio.sleep(0.35)  # A died without releasing
        assert await b.held() and not await a.held()
    finally:
        await c.close()


async def test_the_next_worker_arbitrates_when_the_smallest_id_is_gone() -> None:
    c = await start_cluster(pd_roles=("prefill", "decode", "decode"))
    try:
        a, b = _replicas(c.registry)
        assert await a.held()
        # pd-0 is dead but still listed healthy until heartbeats say so: the RPC fails, pd-1 answers.
        await c.worker("pd-0").stop()
        assert await b.held() and b.arbiter == "pd-1"
        assert not await a.held() and a.arbiter == "pd-1"
    finally:
        await c.close()


class _PlansOneMove(LongTermController):
    """The real controller, except that every step moves pd-1 from decode to prefill."""

    def step(
        self, now: float, workers: Sequence[WorkerSnapshot], local_cluster: str = "local"
    ) -> LongTermDecision:
        move = RoleChange("pd-1", Role.DECODE, Role.PREFILL)
        return LongTermDecision(math.nan, 2, 1, [move], "rebalance:prefill_bound")


async def test_only_the_leaders_control_loop_changes_roles() -> None:
    c = await start_cluster(pd_roles=("prefill", "decode", "decode"))
    try:
        a, b = _replicas(c.registry)
        long = _PlansOneMove(_model())
        follower = ControlLoops(c.registry, c.dispatcher.short, 1e9, "prfaas", "pd", long=long,
                                leadership=b)  # fmt: skip
        leader = ControlLoops(c.registry, c.dispatcher.short, 1e9, "prfaas", "pd", long=long,
                              leadership=a)  # fmt: skip
        assert await a.held()  # A's router got there first
        await follower.long_tick()
        assert c.worker("pd-1").role == "decode"  # the follower planned the move, applied nothing
        await leader.long_tick()
        assert c.worker("pd-1").role == "prefill"
        await leader.stop()  # releases: the other replica leads from its next tick
        assert await b.held()
    finally:
        await c.close()


def test_holder_ids_differ_between_routers() -> None:
    assert router_holder_id() != router_holder_id()
