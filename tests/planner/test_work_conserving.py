"""The work-conserving Λ (planner/work_conserving.py): mean prefill times per class, checked against
a Monte Carlo draw of the same lengths and against the paper's model where T_prefill is linear."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prfaas.planner.case import plan, policy_model
from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.search import ClusterModel, evaluate
from prfaas.planner.work_conserving import mean_prefill_seconds, work_conserving_lambda
from prfaas.planner.workload import EmpiricalLengths, TruncatedLogNormal
from prfaas.tools.experiment.scale import Scale, scaled_case

DIST = TruncatedLogNormal(mu=9.9, sigma=1.0, min_length=128, max_length=131072)


def _profile(seconds: list[float]) -> PrefillProfile:
    tokens = [128, 4096, 32768, 131072]
    return PrefillProfile(
        "test", np.asarray(tokens, float), np.asarray(seconds), np.asarray(tokens, float) * 1e3
    )


def test_mean_time_matches_a_monte_carlo_draw_of_the_lengths() -> None:
    convex = _profile([0.1, 0.5, 6.0, 60.0])
    rng = np.random.default_rng(0)
    draws = np.exp(rng.normal(DIST.mu, DIST.sigma, 400_000))
    draws = draws[(draws >= DIST.min_length) & (draws <= DIST.max_length)]
    for lo, hi in [(-math.inf, math.inf), (-math.inf, 20_000), (20_000, math.inf)]:
        inside = draws[(draws > lo) & (draws <= hi)]
        expected = float(convex.t_prefill(inside).mean())
        assert mean_prefill_seconds(convex, DIST, lo, hi) == pytest.approx(expected, rel=0.01)
    # An empirical distribution is its own samples.
    emp = EmpiricalLengths.from_samples([1000, 3000])
    assert mean_prefill_seconds(convex, emp, -math.inf, math.inf) == pytest.approx(
        float(convex.t_prefill(np.asarray([1000.0, 3000.0])).mean())
    )
    assert math.isnan(mean_prefill_seconds(convex, emp, 5000, math.inf))


def test_an_affine_profile_gives_the_papers_lambda() -> None:
    """E[a + b L] = a + b E[L]: with an affine T_prefill the two models agree."""
    affine = _profile([0.1 + 1e-4 * n for n in (128, 4096, 32768, 131072)])
    model = ClusterModel(pd_profile=affine, decode=DecodeProfile(64, 0.05), output_tokens=64,
                         n_pd=8, n_prfaas=2, prfaas_profile=affine,
                         link_bytes_per_s=1e12)  # fmt: skip
    for t, n_p in [(20_000.0, 3), (math.inf, 5), (-1.0, 0)]:
        point = evaluate(model, DIST, t, n_p)
        assert work_conserving_lambda(model, DIST, point) == pytest.approx(
            point.lambda_max, rel=1e-3
        )


def test_the_experiments_case_convexity_lowers_homogeneous_pd_most() -> None:
    """On the scaled case study the H20 profile is convex over the log-normal's spread: the
    homogeneous deployment (every prompt on H20s) loses ~22 %, the ones that move long prompts to
    H200s only a few %. The bound never exceeds the paper's Λ (Jensen: E[T(L)] >= T(E[L]))."""
    case = scaled_case(Scale())
    result = plan(case)
    lam = {}
    for dp in result.plans.values():
        work = work_conserving_lambda(policy_model(case, dp.deployment), case.lengths, dp.point)
        assert work <= dp.point.lambda_max * (1 + 1e-9)
        lam[dp.deployment.policy] = work / dp.point.lambda_max
    assert lam["homogeneous-pd"] < 0.85
    assert lam["prfaas"] > 0.95 and lam["naive-hetero"] > 0.95
