"""SLO-aware planning (`prfaas plan --simulate`): the highest rate that meets a TTFT/TPOT SLO in
simulation, at the planner's operating point and over a coarse search of t and N_p / N_d.

The analytical Λ_max (Eqs. 1-8) is a throughput bound with no queueing: at Λ_max every queue
grows without limit. Here each candidate (t, N_p, N_d) runs in the simulator at a rate found by
bisection (`iterations` steps between 0 and 1.5 × the planner's Λ_max): the highest rate at
which P90 TTFT, mean TPOT and the completion ratio (no 429s) meet the SLO over `duration_s` of
Poisson arrivals. The search is coarse on purpose (a few t around the planner's, N_p ± 2):
each point costs `iterations` simulations of the whole deployment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from prfaas.planner import Case, DeploymentPlan
from prfaas.tools.sim.case_inputs import case_config, case_requests
from prfaas.tools.sim.simulation import SimResult, Simulation

T_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
N_P_OFFSETS = (-2, -1, 0, 1, 2)


@dataclass(frozen=True)
class Slo:
    ttft_p90_s: float = 10.0
    tpot_s: float = 0.0375
    """Mean time per output token (the case study's 40 tokens/s is 25 ms; 1.5× that)."""
    min_completion: float = 0.99


@dataclass(frozen=True)
class Candidate:
    threshold: float
    n_p: int
    n_d: int


def slo_metrics(result: SimResult) -> dict[str, float]:
    reqs = result.requests
    # (first token, finish) of every request that completed
    ok = [(r, r.first_token_s, r.finish_s) for r in reqs if r.error is None
          and r.first_token_s is not None and r.finish_s is not None]  # fmt: skip
    ttft = [first - r.arrival_s for r, first, _ in ok]
    tpot = [(end - first) / (r.output_tokens - 1) for r, first, end in ok if r.output_tokens > 1]
    return {
        "completion": len(ok) / len(reqs) if reqs else 0.0,
        "ttft_p90_s": float(np.percentile(ttft, 90)) if ttft else math.inf,
        "tpot_mean_s": float(np.mean(tpot)) if tpot else math.inf,
    }


def meets(m: dict[str, float], slo: Slo) -> bool:
    return (m["completion"] >= slo.min_completion and m["ttft_p90_s"] <= slo.ttft_p90_s
            and m["tpot_mean_s"] <= slo.tpot_s)  # fmt: skip


def simulate_at(case: Case, dp: DeploymentPlan, c: Candidate, rate: float, duration_s: float,
                seed: int) -> dict[str, float]:  # fmt: skip
    cfg = case_config(case, dp.deployment, threshold=c.threshold, n_p=c.n_p, n_d=c.n_d)
    result = Simulation(cfg, seed).run(case_requests(case, rate, duration_s, seed))
    return slo_metrics(result)


def max_rate(case: Case, dp: DeploymentPlan, c: Candidate, slo: Slo, *, duration_s: float,
             seed: int, iterations: int) -> tuple[float, dict[str, float]]:  # fmt: skip
    """Bisection on the rate: (highest rate that met the SLO, its metrics); (0, the metrics at
    the lowest rate tried) when none did."""
    lo, hi = 0.0, 1.5 * dp.point.lambda_max
    best: dict[str, float] = {}
    lowest: dict[str, float] = {}
    for _ in range(iterations):
        mid = (lo + hi) / 2
        m = {"rate_rps": mid, **simulate_at(case, dp, c, mid, duration_s, seed)}
        if meets(m, slo):
            lo, best = mid, m
        else:
            hi, lowest = mid, m
    return lo, best or lowest


def candidates(dp: DeploymentPlan) -> list[Candidate]:
    pt, dep = dp.point, dp.deployment
    if dep.policy == "naive-hetero":
        return [Candidate(pt.threshold, pt.n_p, pt.n_d)]
    ts = [pt.threshold * f for f in T_FACTORS] if dep.policy == "prfaas" else [pt.threshold]
    n_ps = sorted({min(max(pt.n_p + d, 1), dep.n_pd - 1) for d in N_P_OFFSETS})
    return [Candidate(t, n_p, dep.n_pd - n_p) for t in ts for n_p in n_ps]


def plan_simulated(case: Case, dp: DeploymentPlan, slo: Slo, *, duration_s: float = 600.0,
                   seed: int = 0, iterations: int = 6, search: bool = True) -> dict[str, Any]:  # fmt: skip
    """The planner's point and (with `search`) the best searched point, each with its SLO rate."""
    pt = dp.point
    planned = Candidate(pt.threshold, pt.n_p, pt.n_d)
    rate, m = max_rate(case, dp, planned, slo, duration_s=duration_s, seed=seed,
                       iterations=iterations)  # fmt: skip
    out: dict[str, Any] = {
        "lambda_max_rps": pt.lambda_max, "planned": {**planned.__dict__, "slo_rate_rps": rate,
                                                     "metrics": m},
    }  # fmt: skip
    if search:
        best = (rate, planned, m)
        tried = []
        for c in candidates(dp):
            if c == planned:
                continue
            r, cm = max_rate(case, dp, c, slo, duration_s=duration_s, seed=seed,
                             iterations=iterations)  # fmt: skip
            tried.append({**c.__dict__, "slo_rate_rps": r})
            if r > best[0]:
                best = (r, c, cm)
        out["searched"] = {**best[1].__dict__, "slo_rate_rps": best[0], "metrics": best[2],
                           "candidates": len(tried) + 1, "tried": tried}  # fmt: skip
    return out
