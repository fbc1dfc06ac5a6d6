"""Long-term controller: scripted request windows -> role changes, with hysteresis."""

from __future__ import annotations

import math

import numpy as np

from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.search import ClusterModel
from prfaas.roles import Role
from prfaas.router.control import LongTermConfig, LongTermController
from prfaas.router.policy import WorkerSnapshot

PROFILE = PrefillProfile(
    "lin", np.array([1000.0, 4000.0]), np.array([1.0, 4.0]), np.array([1e6, 4e6])
)
# Same hand-worked case as the planner test: lengths 1K..4K, optimum N_p = 2 of 3.
MODEL = ClusterModel(
    PROFILE,
    DecodeProfile(100, 0.1),
    10,
    n_pd=3,
    n_prfaas=1,
    prfaas_profile=PROFILE,
    link_bytes_per_s=1e12,
)


def _workers(n_p: int) -> list[WorkerSnapshot]:
    roles = [Role.PREFILL] * n_p + [Role.DECODE] * (3 - n_p)
    return [WorkerSnapshot(f"w{i}", "local", r, load=0.1 * i) for i, r in enumerate(roles)] + [
        WorkerSnapshot("r0", "prfaas", Role.PRFAAS)
    ]


def _feed(ctl: LongTermController, start: float, n: int) -> None:
    for i in range(n):
        ctl.observe_request(start + i * 0.1, [1000, 2000, 3000, 4000][i % 4])


def test_insufficient_data_holds() -> None:
    ctl = LongTermController(MODEL, LongTermConfig(min_samples=50))
    _feed(ctl, 0.0, 10)
    d = ctl.step(10.0, _workers(1))
    assert d.reason == "hold:insufficient_data" and d.actions == [] and math.isnan(d.threshold)


def test_prefill_bound_converts_one_decode_then_holds() -> None:
    ctl = LongTermController(MODEL, LongTermConfig(window_s=60, min_samples=20))
    _feed(ctl, 0.0, 200)
    d = ctl.step(20.0, _workers(1))
    assert d.reason == "rebalance:prefill_bound"
    assert [(a.worker_id, a.from_role, a.to_role) for a in d.actions] == [
        ("w1", Role.DECODE, Role.PREFILL)
    ]
    assert (d.n_p, d.n_d) == (2, 1)
    assert 3000 <= d.threshold < 4000
    assert d.planned.lambda_max > d.current.lambda_max
    # Applied: the same input now yields no further moves (no flapping).
    again = ctl.step(20.0, _workers(2))
    assert again.actions == [] and again.reason == "retune_threshold"
    assert again.threshold == d.threshold


def test_decode_bound_converts_prefill_and_old_samples_expire() -> None:
    ctl = LongTermController(MODEL, LongTermConfig(window_s=10, min_samples=20))
    _feed(ctl, 0.0, 100)
    # Measured decode is 5x slower than profiled: the 2 decode-less splits starve decode.
    ctl.observe_stage_speed(decode_rps_per_instance=0.4)
    d = ctl.step(10.0, _workers(2))
    assert d.reason == "rebalance:decode_bound"
    assert d.actions[0].to_role is Role.DECODE and d.actions[0].worker_id == "w0"
    assert ctl.step(100.0, _workers(1)).reason == "hold:insufficient_data"  # window emptied


def test_small_gain_does_not_move() -> None:
    ctl = LongTermController(MODEL, LongTermConfig(window_s=60, min_samples=20, min_gain=10.0))
    _feed(ctl, 0.0, 200)
    assert ctl.step(20.0, _workers(1)).actions == []
