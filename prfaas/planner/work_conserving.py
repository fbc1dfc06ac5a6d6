"""Λ_max with mean prefill *times*, not the time of the mean length (a check on Eqs. 3-6).

The paper's model represents every request of a class by its mean length: a PD-P instance
serves N_p / T_prefill(E[L | L <= t]) requests per second. T_prefill grows faster than linearly
(attention), so by Jensen's inequality E[T(L)] > T(E[L]) and the model overstates what the
instances can do under a spread of lengths: for the case study's log-normal workload, scaled to
the experiment, E[T_H20(L)] is ~1.28 x T_H20(E[L]), so homogeneous-pd's "Λ_max" is work that 9
H20s cannot do at all (utilisation 1.15 at 0.9 Λ). Work conservation bounds any scheduler by

    Θ = N / E[T(L) | class]            (prefill side, per class)

with the link (S_kv is affine in L, so its mean is exact) and decode terms unchanged. This module
evaluates Eq. 6 with those Θ at a planned operating point. The planner's search stays the paper's
(its case study is what it reproduces); `prfaas experiment` reports both and can set its rates
from this one (`--rate-basis work`).
"""

from __future__ import annotations

import math

import numpy as np

from prfaas.planner import model as eq
from prfaas.planner.profiles import PrefillProfile
from prfaas.planner.search import ClusterModel, OperatingPoint
from prfaas.planner.workload import EmpiricalLengths, LengthDistribution, TruncatedLogNormal

GRID_POINTS = 4001
"""Quadrature points over ln L for a log-normal (the integrand is smooth; 4001 is exact to ~1e-6)."""


def _support(lengths: LengthDistribution) -> tuple[np.ndarray, np.ndarray]:
    """(lengths [n], probability weights [n] summing to 1) representing the distribution."""
    if isinstance(lengths, EmpiricalLengths):
        n = lengths.lengths.size
        return lengths.lengths, np.full(n, 1.0 / n)
    if isinstance(lengths, TruncatedLogNormal):
        u = np.linspace(math.log(lengths.min_length), math.log(lengths.max_length), GRID_POINTS)
        density = np.exp(-0.5 * ((u - lengths.mu) / lengths.sigma) ** 2)  # in ln L, unnormalised
        w = density * np.gradient(u)
        return np.exp(u), w / w.sum()
    raise TypeError(f"no quadrature for {type(lengths).__name__}")


def mean_prefill_seconds(
    profile: PrefillProfile, lengths: LengthDistribution, lo: float, hi: float
) -> float:
    """E[T_prefill(L) | lo < L <= hi]; NaN when the class is empty."""
    x, w = _support(lengths)
    inside = (x > lo) & (x <= hi)
    mass = float(w[inside].sum())
    if mass <= 1e-12:
        return math.nan
    return float((w[inside] * profile.t_prefill(x[inside])).sum() / mass)


def work_conserving_lambda(
    model: ClusterModel, lengths: LengthDistribution, point: OperatingPoint
) -> float:
    """Eq. 6 at `point` (its t, p, N_p, N_d) with each prefill class's Θ from its mean time."""
    t = point.threshold
    if model.n_prfaas > 0 and model.prfaas_profile is not None and point.p > 0:
        long_s = mean_prefill_seconds(model.prfaas_profile, lengths, t, math.inf)
        link = model.link_bytes_per_s / float(model.prfaas_profile.s_kv(point.l_long))
        th_prfaas = min(model.n_prfaas / long_s, link)
    else:
        th_prfaas = 0.0
    if point.n_p > 0 and point.p < 1:
        th_pdp = point.n_p / mean_prefill_seconds(model.pd_profile, lengths, -math.inf, t)
    else:
        th_pdp = 0.0
    lam = eq.lambda_max(
        np.asarray(th_prfaas), np.asarray(th_pdp), point.theta_pd_decode, np.asarray(point.p)
    )
    return float(lam)
