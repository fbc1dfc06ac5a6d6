"""Grid search over the threshold t and the PD split N_p / N_d (paper §3.4.2, Fig. 5).

The objective is Λ_max (Eq. 6). Instance counts are integers and Λ_max is often flat (e.g. when
decode binds), so among points within `TIE_RTOL` of the best Λ_max the search prefers the one with
the most prefill capacity min(Θ_prfaas/p, Θ_pd-p/(1-p)): that is where Eq. 7 holds (both prefill
stages saturate together) and it leaves the most headroom before prefill binds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prfaas.planner import model as eq
from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.workload import LengthDistribution

TIE_RTOL = 1e-9
"""Relative tolerance within which two Λ_max values count as equal."""
DEFAULT_T_STEP = 128
"""Default threshold grid step in tokens (a quarter of a 512-token block)."""


@dataclass(frozen=True)
class ClusterModel:
    """Fixed inputs of the optimisation: hardware, link and SLO (paper §3.4.2)."""

    pd_profile: PrefillProfile
    """Prefill profile of one local PD instance (H20 in the case study)."""
    decode: DecodeProfile
    """Decode constants of one local PD instance at the SLO."""
    output_tokens: float
    """L_out: mean output length in tokens."""
    n_pd: int
    """N_p + N_d: local PD instances, fixed in the short term."""
    n_prfaas: int = 0
    """PrfaaS prefill instances (0: no PrfaaS cluster)."""
    prfaas_profile: PrefillProfile | None = None
    """Prefill profile of one PrfaaS instance; required when n_prfaas > 0."""
    link_bytes_per_s: float = 0.0
    """B_out: PrfaaS egress bandwidth, bytes per second."""


@dataclass(frozen=True)
class OperatingPoint:
    """One evaluated (t, N_p, N_d): every quantity of Eqs. 3-6. Rates in req/s."""

    threshold: float
    n_prfaas: int
    n_p: int
    n_d: int
    p: float
    l_short: float
    l_long: float
    theta_prfaas: float
    theta_pd_prefill: float
    theta_pd_decode: float
    lambda_max: float
    egress_bytes_per_s: float
    """Average PrfaaS egress at Λ_max: Λ_max · p · S_kv(l_long)."""


@dataclass(frozen=True)
class Grid:
    """Λ_max over the whole search grid, for Fig. 5 style plots."""

    thresholds: np.ndarray
    """[num_t] tokens."""
    n_p_values: np.ndarray
    """[num_splits] N_p; N_d = n_pd - N_p."""
    lambda_max: np.ndarray
    """[num_splits, num_t] req/s."""


def default_thresholds(lengths: LengthDistribution, step: int = DEFAULT_T_STEP) -> np.ndarray:
    """0, step, 2·step, ... up to the first multiple at or above the longest length."""
    top = int(np.ceil(lengths.max_length / step)) * step
    return np.arange(0, top + step, step, dtype=float)


def _rows(
    model: ClusterModel, lengths: LengthDistribution, thresholds: np.ndarray, n_p: int
) -> dict[str, np.ndarray]:
    """Every Eq. 3-6 quantity for one split over a row of thresholds."""
    split = lengths.split(thresholds)
    n_d = model.n_pd - n_p
    if model.n_prfaas > 0 and model.prfaas_profile is not None:
        th_prfaas = eq.theta_prfaas(
            model.n_prfaas, model.prfaas_profile, split.l_long, model.link_bytes_per_s
        )
        kv_long = model.prfaas_profile.s_kv(split.l_long)
    else:
        th_prfaas = np.zeros_like(split.p)
        kv_long = np.zeros_like(split.p)
    th_pdp = eq.theta_pd_prefill(n_p, model.pd_profile, split.l_short)
    th_pdd = eq.theta_pd_decode(n_d, model.decode, model.output_tokens)
    # An unused stage has no representative length (NaN); it then never binds Eq. 6.
    th_prfaas = np.where(np.isnan(th_prfaas), 0.0, th_prfaas)
    th_pdp = np.where(np.isnan(th_pdp), 0.0, th_pdp)
    lam = eq.lambda_max(th_prfaas, th_pdp, th_pdd, split.p)
    egress = np.where(split.p > 0, lam * split.p * np.nan_to_num(kv_long), 0.0)
    return {
        "t": split.thresholds,
        "p": split.p,
        "l_short": split.l_short,
        "l_long": split.l_long,
        "theta_prfaas": th_prfaas,
        "theta_pdp": th_pdp,
        "theta_pdd": np.full_like(split.p, th_pdd),
        "lambda": lam,
        "egress": egress,
        "prefill_cap": eq.prefill_capacity(th_prfaas, th_pdp, split.p),
    }


def _point(model: ClusterModel, n_p: int, rows: dict[str, np.ndarray], i: int) -> OperatingPoint:
    return OperatingPoint(
        threshold=float(rows["t"][i]),
        n_prfaas=model.n_prfaas,
        n_p=n_p,
        n_d=model.n_pd - n_p,
        p=float(rows["p"][i]),
        l_short=float(rows["l_short"][i]),
        l_long=float(rows["l_long"][i]),
        theta_prfaas=float(rows["theta_prfaas"][i]),
        theta_pd_prefill=float(rows["theta_pdp"][i]),
        theta_pd_decode=float(rows["theta_pdd"][i]),
        lambda_max=float(rows["lambda"][i]),
        egress_bytes_per_s=float(rows["egress"][i]),
    )


def evaluate(
    model: ClusterModel, lengths: LengthDistribution, threshold: float, n_p: int
) -> OperatingPoint:
    """Evaluate Eqs. 3-6 at one (t, N_p); t = inf keeps everything local, t < min offloads all."""
    return _point(model, n_p, _rows(model, lengths, np.asarray([threshold]), n_p), 0)


def _best_index(rows: dict[str, np.ndarray]) -> int:
    lam = rows["lambda"]
    best = np.nanmax(lam)
    ties = np.flatnonzero(lam >= best * (1.0 - TIE_RTOL))
    return int(ties[np.argmax(rows["prefill_cap"][ties])])


def optimal_threshold(
    model: ClusterModel,
    lengths: LengthDistribution,
    n_p: int,
    thresholds: np.ndarray | None = None,
) -> OperatingPoint:
    """The best t for a fixed split N_p, N_d = n_pd - N_p (the short-term re-optimisation)."""
    grid_t = default_thresholds(lengths) if thresholds is None else np.asarray(thresholds, float)
    rows = _rows(model, lengths, grid_t, n_p)
    return _point(model, n_p, rows, _best_index(rows))


def search(
    model: ClusterModel,
    lengths: LengthDistribution,
    thresholds: np.ndarray | Sequence[float] | None = None,
    n_p_values: Sequence[int] | None = None,
) -> tuple[OperatingPoint, Grid]:
    """Exhaustive 2-D grid search over t and N_p (N_d >= 1); returns the best point and the grid."""
    grid_t = default_thresholds(lengths) if thresholds is None else np.asarray(thresholds, float)
    splits = list(range(0, model.n_pd)) if n_p_values is None else list(n_p_values)
    best: OperatingPoint | None = None
    best_cap = -np.inf
    table = np.zeros((len(splits), grid_t.size))
    for row, n_p in enumerate(splits):
        rows = _rows(model, lengths, grid_t, n_p)
        table[row] = rows["lambda"]
        i = _best_index(rows)
        cand = _point(model, n_p, rows, i)
        cap = float(rows["prefill_cap"][i])
        if (
            best is None
            or cand.lambda_max > best.lambda_max * (1.0 + TIE_RTOL)
            or cand.lambda_max >= best.lambda_max * (1.0 - TIE_RTOL)
            and cap > best_cap
        ):
            best, best_cap = cand, cap
    assert best is not None, "search needs at least one split"
    return best, Grid(grid_t, np.asarray(splits), table)
