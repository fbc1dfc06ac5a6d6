"""route(): every branch of the §2.3 placement rule, for all three policies."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prfaas.roles import Role
from prfaas.router.policy import (
    LinkState,
    Reason,
    RouteRequest,
    RoutingConfig,
    Target,
    WorkerSnapshot,
    missing_role,
    route,
)
from prfaas.router.prefix_index import PrefixMatch

T = 1000
BIG = 1_000_000
WORKERS = [
    WorkerSnapshot("p0", "local", Role.PREFILL, queue_depth=0),
    WorkerSnapshot("p1", "local", Role.PREFILL, queue_depth=1),
    WorkerSnapshot("d0", "local", Role.DECODE, load=0.5, free_kv_tokens=BIG),
    WorkerSnapshot("d1", "local", Role.DECODE, load=0.2, free_kv_tokens=BIG),
    WorkerSnapshot("r0", "prfaas", Role.PRFAAS, queue_depth=0),
    WorkerSnapshot("r1", "prfaas", Role.PRFAAS, queue_depth=1),
]
SCARCE, ABUNDANT, DOWN = LinkState(True, True), LinkState(True, False), LinkState(False, True)


def _hits(**per_worker: int) -> PrefixMatch:
    cluster = {"p0": "local", "p1": "local", "r0": "prfaas", "r1": "prfaas"}
    per_cluster: dict[str, int] = {}
    best: dict[str, str] = {}
    for w, n in sorted(per_worker.items()):
        if n > per_cluster.get(cluster[w], 0):
            per_cluster[cluster[w]], best[cluster[w]] = n, w
    return PrefixMatch(dict(per_worker), per_cluster, best)


# (case, total, hits, link, target, reason, prefill, cached, cross)
CASES = [
    ("short", 800, {}, SCARCE, Target.LOCAL, Reason.SHORT, "p0", 0, False),
    ("at_threshold_stays_local", T, {}, SCARCE, Target.LOCAL, Reason.SHORT, "p0", 0, False),
    ("long_offloaded", 5000, {}, SCARCE, Target.PRFAAS, Reason.OFFLOADED, "r0", 0, False),
    # scarce: each cluster's own cache
    (
        "scarce_local_hit_keeps_local",
        5000,
        {"p1": 4500},
        SCARCE,
        Target.LOCAL,
        Reason.PREFIX_HIT,
        "p1",
        4500,
        False,
    ),
    (
        "scarce_prfaas_hit_ignored_for_local_test",
        5000,
        {"r1": 4500},
        SCARCE,
        Target.PRFAAS,
        Reason.OFFLOADED,
        "r1",
        4500,
        False,
    ),
    (
        "scarce_small_local_hit_still_offloads",
        5000,
        {"p0": 2000, "r0": 1000},
        SCARCE,
        Target.PRFAAS,
        Reason.OFFLOADED,
        "r0",
        1000,
        False,
    ),
    # abundant: best cache anywhere, cross-cluster transfer when it lives elsewhere
    (
        "abundant_prfaas_hit_pulled_local",
        5000,
        {"r1": 4500},
        ABUNDANT,
        Target.LOCAL,
        Reason.PREFIX_HIT,
        "p0",
        4500,
        True,
    ),
    (
        "abundant_local_hit_pushed_to_prfaas",
        9000,
        {"p1": 3000},
        ABUNDANT,
        Target.PRFAAS,
        Reason.OFFLOADED,
        "r0",
        3000,
        True,
    ),
    (
        "abundant_prfaas_hit_used_in_place",
        9000,
        {"r1": 3000, "p0": 1000},
        ABUNDANT,
        Target.PRFAAS,
        Reason.OFFLOADED,
        "r1",
        3000,
        False,
    ),
    (
        "abundant_local_hit_used_in_place",
        5000,
        {"p1": 4500},
        ABUNDANT,
        Target.LOCAL,
        Reason.PREFIX_HIT,
        "p1",
        4500,
        False,
    ),
    # failures of the PrfaaS side fall back to local with the local cache
    (
        "link_down",
        5000,
        {"r0": 4500},
        DOWN,
        Target.LOCAL,
        Reason.PRFAAS_UNAVAILABLE,
        "p0",
        0,
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "total", "hits", "link", "target", "reason", "prefill", "cached", "cross"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_prfaas_policy(case, total, hits, link, target, reason, prefill, cached, cross) -> None:
    d = route(RouteRequest(total, 16), WORKERS, _hits(**hits), link, T, RoutingConfig())
    assert (d.target, d.reason, d.prefill_worker) == (target, reason, prefill)
    assert (d.cached_tokens, d.incremental_tokens, d.cross_cluster_transfer) == (
        cached,
        total - cached,
        cross,
    )
    assert d.decode_worker == "d1"  # least-loaded decode node
    assert d.threshold == T


def test_raised_threshold_reports_bandwidth_limited() -> None:
    d = route(RouteRequest(5000), WORKERS, _hits(), SCARCE, 8000, RoutingConfig(), base_threshold=T)
    assert (d.target, d.reason) == (Target.LOCAL, Reason.BANDWIDTH_LIMITED)


def test_prfaas_queue_full_and_unhealthy() -> None:
    full = [replace(w, queue_depth=8) if w.role is Role.PRFAAS else w for w in WORKERS]
    d = route(RouteRequest(5000), full, _hits(), SCARCE, T, RoutingConfig())
    assert (d.target, d.reason) == (Target.LOCAL, Reason.PRFAAS_QUEUE_FULL)
    sick = [replace(w, healthy=False) if w.role is Role.PRFAAS else w for w in WORKERS]
    d = route(RouteRequest(5000), sick, _hits(), SCARCE, T, RoutingConfig())
    assert (d.target, d.reason) == (Target.LOCAL, Reason.PRFAAS_UNAVAILABLE)


def test_cache_affinity_bounded_by_queue_slack() -> None:
    busy = [replace(w, queue_depth=5) if w.worker_id == "p1" else w for w in WORKERS]
    d = route(RouteRequest(1000), busy, _hits(p1=512), SCARCE, T, RoutingConfig())
    assert (d.prefill_worker, d.cached_tokens) == ("p0", 0)  # p1's queue is 5 > 0 + slack 2
    d = route(RouteRequest(1000), WORKERS, _hits(p1=512), SCARCE, T, RoutingConfig())
    assert (d.prefill_worker, d.cached_tokens) == ("p1", 512)


def test_prefill_worker_balanced_by_predicted_wait() -> None:
    # p0 has the shorter queue but one 131K-token prompt in it; p1 three short ones.
    cfg = RoutingConfig(policy="homogeneous-pd")
    waits = {"p0": 40.0, "p1": 1.5}
    snaps = [replace(w, predicted_wait_s=waits.get(w.worker_id, 0.0),
                     queue_depth=3 if w.worker_id == "p1" else w.queue_depth)
             for w in WORKERS]  # fmt: skip
    d = route(RouteRequest(20_000), snaps, _hits(), SCARCE, T, cfg)
    assert d.prefill_worker == "p1"
    # A cached prefix wins only within the wait slack (2 s): 40 s is far outside it.
    d = route(RouteRequest(20_000), snaps, _hits(p0=16_000), SCARCE, T, cfg)
    assert (d.prefill_worker, d.cached_tokens) == ("p1", 0)
    close = [replace(w, predicted_wait_s=3.0) if w.worker_id == "p0" else w for w in snaps]
    d = route(RouteRequest(20_000), close, _hits(p0=16_000), SCARCE, T, cfg)
    assert (d.prefill_worker, d.cached_tokens) == ("p0", 16_000)


def test_decode_needs_memory_and_draining_is_skipped() -> None:
    ws = [replace(w, free_kv_tokens=100) if w.worker_id == "d1" else w for w in WORKERS]
    assert (
        route(RouteRequest(800, 16), ws, _hits(), SCARCE, T, RoutingConfig()).decode_worker == "d0"
    )
    ws = [replace(w, draining=True) if w.worker_id == "p0" else w for w in WORKERS]
    assert route(RouteRequest(800), ws, _hits(), SCARCE, T, RoutingConfig()).prefill_worker == "p1"
    no_decode = [w for w in WORKERS if w.role is not Role.DECODE]
    d = route(RouteRequest(800), no_decode, _hits(), SCARCE, T, RoutingConfig())
    assert (d.target, d.reason, d.decode_worker) == (None, Reason.NO_CAPACITY, None)


def test_fully_cached_prompt_still_computes_one_token() -> None:
    d = route(RouteRequest(1024), WORKERS, _hits(p0=1024), SCARCE, T, RoutingConfig())
    assert (d.cached_tokens, d.incremental_tokens) == (1023, 1)


def test_homogeneous_policy_uses_local_and_mixed_workers() -> None:
    cfg = RoutingConfig(policy="homogeneous-pd")
    d = route(RouteRequest(50_000), WORKERS, _hits(), SCARCE, T, cfg)
    assert (d.target, d.reason, d.prefill_worker, d.decode_worker) == (
        Target.LOCAL,
        Reason.POLICY_LOCAL,
        "p0",
        "d1",
    )
    mixed = [
        WorkerSnapshot("m0", "local", Role.MIXED, free_kv_tokens=BIG, queue_depth=3),
        WorkerSnapshot("m1", "local", Role.MIXED, free_kv_tokens=BIG),
    ]
    d = route(RouteRequest(50_000), mixed, PrefixMatch(), SCARCE, T, cfg)
    assert (d.prefill_worker, d.decode_worker) == ("m1", "m1")


def test_naive_hetero_offloads_everything_unless_unavailable() -> None:
    cfg = RoutingConfig(policy="naive-hetero")
    d = route(RouteRequest(100), WORKERS, _hits(p0=64), SCARCE, T, cfg)
    assert (d.target, d.reason, d.prefill_worker, d.decode_worker) == (
        Target.PRFAAS,
        Reason.POLICY_OFFLOAD,
        "r0",
        "d1",
    )
    d = route(RouteRequest(100), WORKERS, _hits(), DOWN, T, cfg)
    assert (d.target, d.reason) == (Target.LOCAL, Reason.PRFAAS_UNAVAILABLE)


def test_unknown_policy_rejected() -> None:
    with pytest.raises(ValueError, match="unknown routing policy"):
        route(RouteRequest(1), WORKERS, _hits(), SCARCE, T, RoutingConfig(policy="random"))


def test_full_decode_workers_take_no_one() -> None:
    """load is the running batch over BS_max: a full decode worker is skipped, and when every
    decode worker is full there is no capacity (the router answers 429)."""
    ws = [replace(w, load=1.0) if w.worker_id == "d1" else w for w in WORKERS]
    assert route(RouteRequest(800), ws, _hits(), SCARCE, T, RoutingConfig()).decode_worker == "d0"
    full = [replace(w, load=1.0) if w.role is Role.DECODE else w for w in WORKERS]
    d = route(RouteRequest(800), full, _hits(), SCARCE, T, RoutingConfig())
    assert (d.target, d.reason) == (None, Reason.NO_CAPACITY)


@pytest.mark.parametrize(
    ("policy", "down", "missing"),
    [
        ("prfaas", set(), None),
        ("prfaas", {"p0", "p1"}, None),  # PrfaaS still prefills
        ("prfaas", {"p0", "p1", "r0", "r1"}, "prefill"),
        ("prfaas", {"d0", "d1"}, "decode"),
        ("naive-hetero", {"p0", "p1"}, None),
        ("homogeneous-pd", {"p0", "p1"}, "prefill"),  # never uses PrfaaS
    ],
)
def test_missing_role(policy: str, down: set[str], missing: str | None) -> None:
    workers = [replace(w, healthy=w.worker_id not in down) for w in WORKERS]
    assert missing_role(workers, RoutingConfig(policy=policy)) == missing


def test_short_request_offloaded_when_no_local_prefill_is_up() -> None:
    workers = [replace(w, healthy=w.role is not Role.PREFILL) for w in WORKERS]
    d = route(RouteRequest(100), workers, _hits(), SCARCE, T, RoutingConfig())
    assert (d.target, d.reason, d.prefill_worker) == (
        Target.PRFAAS,
        Reason.LOCAL_PREFILL_UNAVAILABLE,
        "r0",
    )
    d = route(RouteRequest(100), workers, _hits(), DOWN, T, RoutingConfig())
    assert (d.target, d.reason) == (None, Reason.NO_CAPACITY)
