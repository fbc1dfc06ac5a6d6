"""Several routers, one deployment: every replica's long-term planner plans on the whole
deployment's arrivals, read from the workers' prefill histograms (router/cluster_arrivals.py,
worker/prefill_lengths.py), not on the share of requests it routes itself (issue 17)."""

from __future__ import annotations

import time

import numpy as np
from test_planner_inputs import _model

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.roles import Role
from prfaas.router.cluster_arrivals import ClusterArrivals
from prfaas.router.control import LongTermController, ShortTermController
from prfaas.router.control.long_term import LongTermConfig
from prfaas.router.control_loops import ControlLoops
from prfaas.router.planner_leadership import PlannerLeadership
from prfaas.router.prefix_index import PrefixIndex
from prfaas.router.registry import WorkerHandle, WorkerRegistry
from prfaas.worker.prefill_lengths import PrefillLengths, bucket_of

SHORT, LONG = 2048, 65536  # whole buckets' means: the histogram keeps them exactly
CONFIG = LongTermConfig(window_s=1e6, min_samples=50)
ROLES = {"pd-0": Role.PREFILL, "pd-1": Role.DECODE, "pd-2": Role.DECODE, "prfaas-0": Role.PRFAAS}


class _Follower(PlannerLeadership):
    """Plans, applies nothing (no worker to call here): the test reads the decisions."""

    async def held(self) -> bool:
        return False

    async def release(self) -> None:
        return None


def _registry() -> WorkerRegistry:
    """One router's view of the four workers (handles only: no channels, no monitors)."""
    registry = WorkerRegistry(PrefixIndex(16))
    for wid, role in ROLES.items():
        kind, cluster = ("prefill", "prfaas") if role is Role.PRFAAS else ("pd", "pd")
        registry.workers[wid] = WorkerHandle(wid, kind, cluster, role, "", healthy=True)
    return registry


def _report(registries: list[WorkerRegistry], tallies: dict[str, PrefillLengths]) -> None:
    """Every router's latest GetLoad of every worker: the worker's cumulative histogram."""
    for registry in registries:
        for wid, tally in tallies.items():
            registry.workers[wid].load = worker_pb2.WorkerLoad(
                worker_id=wid, prefill_length_counts=tally.counts,
                prefill_length_tokens=tally.tokens,
            )  # fmt: skip


async def test_each_replica_plans_on_every_replicas_arrivals() -> None:
    """Two routers route 40 requests each, router A the short ones (prefilled on pd-0), B the long
    ones (offloaded to prfaas-0). Alone, neither has the planner's 50 samples, and A's would be
    all short. Both now plan exactly as one router that routed all 80 would: the same rate, the
    same lengths, the same split and t. (Before: A and B held for insufficient data at 40 each.)"""
    tallies = {wid: PrefillLengths() for wid in ROLES}
    registries = [_registry(), _registry()]
    replicas = [
        ControlLoops(registry, ShortTermController(8192.0), 1e9, "prfaas", "pd",
                     long=LongTermController(_model(), CONFIG), leadership=_Follower())
        for registry in registries
    ]  # fmt: skip
    alone = LongTermController(_model(), CONFIG)  # one router routing everything
    tallies["pd-0"].record(999)  # before the routers started: must not count
    _report(registries, tallies)
    for replica in replicas:  # first sight of every worker: its past is a baseline
        await replica.long_tick()
    for i in range(80):
        now = time.monotonic()
        length = SHORT if i % 2 else LONG
        tallies["pd-0" if length == SHORT else "prfaas-0"].record(length)
        assert replicas[i % 2].long is not None
        replicas[i % 2].long.observe_request(now, length)  # A routes the short, B the long
        alone.observe_request(now, length)
    _report(registries, tallies)
    decisions = [await replica.long_tick() for replica in replicas]
    oracle = alone.step(time.monotonic(), registries[0].snapshots(), "pd")
    assert oracle.reason != "hold:insufficient_data"
    for decision in decisions:
        assert decision is not None
        assert decision.arrivals == "cluster"
        assert decision.arrival_rps == oracle.arrival_rps == 80 / CONFIG.window_s
        assert (decision.reason, decision.n_p, decision.n_d) == (
            oracle.reason, oracle.n_p, oracle.n_d
        )  # fmt: skip
        assert decision.threshold == oracle.threshold
        for point, same in ((decision.current, oracle.current), (decision.planned, oracle.planned)):
            assert point is not None and same is not None
            assert (point.n_p, point.threshold, point.lambda_max) == (
                same.n_p, same.threshold, same.lambda_max
            )  # fmt: skip
    for replica in replicas:
        assert replica.long is not None
        lengths, source = replica.long.arrivals(time.monotonic())
        assert source == "cluster"
        assert sorted(lengths) == [SHORT] * 40 + [LONG] * 40


def test_own_arrivals_when_the_workers_report_fewer() -> None:
    """Workers too old to report a histogram (or prefills not finished yet): the router's own."""
    long = LongTermController(_model(), CONFIG)
    for i in range(10):
        long.observe_request(float(i), 1000 + i)
    counts = np.zeros(128, dtype=np.int64)
    tokens = np.zeros(128, dtype=np.int64)
    counts[bucket_of(500)], tokens[bucket_of(500)] = 3, 1500
    long.observe_cluster(10.0, counts, tokens)
    lengths, source = long.arrivals(10.0)
    assert source == "router" and sorted(lengths) == [1000 + i for i in range(10)]


def test_rises_per_worker_with_baseline_and_restart() -> None:
    registry = _registry()
    arrivals = ClusterArrivals(registry)
    tally = PrefillLengths()
    tally.record(100)
    _report([registry], {"pd-0": tally})
    counts, _ = arrivals.sample()
    assert counts.sum() == 0  # first sight
    for n in (100, 101, 5000):
        tally.record(n)
    _report([registry], {"pd-0": tally})
    counts, tokens = arrivals.sample()
    assert counts.sum() == 3 and tokens.sum() == 5201
    assert counts[bucket_of(100)] == 2 and counts[bucket_of(5000)] == 1
    restarted = PrefillLengths()
    restarted.record(7)
    _report([registry], {"pd-0": restarted})  # counts fell: a new process, all of them new
    counts, tokens = arrivals.sample()
    assert counts.sum() == 1 and tokens.sum() == 7


def test_buckets_are_a_quarter_octave() -> None:
    assert [bucket_of(n) for n in (0, 1, 2, 3, 4, 1024, 1217, 1218)] == [0, 0, 4, 6, 8, 40, 40, 41]
    tally = PrefillLengths()
    for n in (1024, 1100, 2048):
        tally.record(n)
    assert tally.counts[40] == 2 and tally.tokens[40] == 2124 and tally.counts[44] == 1
    assert len(tally.counts) == 45


def _histogram(pairs: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(128, dtype=np.int64)
    tokens = np.zeros(128, dtype=np.int64)
    for length, n in pairs.items():
        counts[bucket_of(length)] += n
        tokens[bucket_of(length)] += n * length
    return counts, tokens


def test_a_replica_reads_its_share_of_the_arrivals_for_the_short_law() -> None:
    """Two replicas route 40 requests each: each routed half of what the workers prefilled, so
    its own 30 s of arrivals are the deployment's over 15 s (the short law's rates double), and
    its offloads' KV in flight is half the deployment's. A sole router, or workers too old to
    report, keep the whole window."""
    registry = _registry()
    long = LongTermController(_model(), CONFIG)
    loops = ControlLoops(registry, ShortTermController(8192.0), 1e9, "prfaas", "pd", long=long,
                         leadership=_Follower())  # fmt: skip
    for i in range(40):
        long.observe_request(time.monotonic(), SHORT if i % 2 else LONG)
        loops.recent_arrivals.observe(time.monotonic(), SHORT if i % 2 else LONG)
    assert long.arrival_share(time.monotonic()) == 1.0  # no worker reports yet
    long.observe_cluster(time.monotonic(), *_histogram({SHORT: 40, LONG: 40}))
    assert long.arrival_share(time.monotonic()) == 0.5
    loops.kv.committed = lambda: {"prfaas-0": 3e6}  # type: ignore[method-assign]
    tel = loops.telemetry()
    assert len(tel.arrivals) == 40
    assert tel.arrivals.window_s == loops.recent_arrivals.window_s * 0.5
    # Its own offloads' KV in flight is half the deployment's too.
    assert tel.committed_bytes == 6e6
    assert tel.offered_bytes_per_s == 6e6 / loops.short_tick_s
    alone = LongTermController(_model(), CONFIG)
    alone.observe_request(0.0, SHORT)
    alone.observe_cluster(1.0, *_histogram({SHORT: 1}))  # completions lag: never above 1
    assert alone.arrival_share(1.0) == 1.0


def test_the_short_law_judges_a_replicas_share_as_the_whole_deployments_arrivals() -> None:
    """The fill cap (and every rule that reads the arrivals as a rate) gives a replica that saw
    every other request, over its share of the window, the t one router sees for all of them."""
    from prfaas.router.control.arrivals import ArrivalWindow
    from prfaas.router.control.short_term import LinkTelemetry

    seen = np.array([1000.0 * (1 + i % 37) for i in range(100)])  # one replica's
    lengths = np.repeat(seen, 2)  # the deployment's: the other replica saw the same mix
    seconds = lengths / 4000.0

    def cap(tokens: np.ndarray, secs: np.ndarray, window_s: float) -> float:
        tel = LinkTelemetry(0.0, 1e9, 0.0, 0.0, 0.0, local_prefill_workers=3,
                            arrivals=ArrivalWindow(tokens, secs, window_s))  # fmt: skip
        return ShortTermController(8192.0)._fill_cap(tel)

    whole = cap(lengths, seconds, 30.0)
    assert whole < float("inf")
    assert cap(seen, seen / 4000.0, 15.0) == whole
    assert cap(seen, seen / 4000.0, 30.0) > whole  # half the load read as the whole
