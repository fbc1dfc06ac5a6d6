"""One offered-load point: Poisson arrivals of the paper's workload against a running deployment,
and the numbers that decide whether the rate is sustainable.

Sustainable (the exact criterion, `Criterion`): no failed request (a 429 counts); a steady state
by the TTFT trend and the backlog (steady.py: the window-free test of issue 12; the completion
ratio below gates only with `gate_completion_ratio`); and per-request time per output token (after the first token, so
a wait for a decode slot counts) p90 ≤ `max_itl_factor` × the decode step. Client-side
inter-token gaps p90 is reported and gates only with `gate_itl` (streamed tokens arrive in pairs
here, so that p90 sits at two steps whatever the load; TPOT is the SLO that sees the decode rate). The steady-state completion ratio pairs each window of
completions with the arrivals that could have completed in it: with L the median end-to-end
latency and S the last send, ratio = completions in [L, S] / arrivals in [0, S − L]; ≈ 1 when the
deployment keeps up (requests faster than L that leave the window at its start balance slower
ones that leave it at its end), ≈ capacity / offered when a backlog grows. The measured
throughput is completions in [L, S] / (S − L).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prfaas.tools.experiment.deploy import Running
from prfaas.tools.experiment.scale import PAPER_MIN, PAPER_MU, PAPER_SIGMA, Scale
from prfaas.tools.experiment.steady import SteadyCriterion, steady_state
from prfaas.tools.loadgen import LoadConfig, Results, lognormal_workload, run_load, schedule_for
from prfaas.tools.loadgen.workloads import Scaling


@dataclass(frozen=True)
class Criterion:
    min_completion_ratio: float = 0.95
    max_itl_factor: float = 1.5
    gate_itl: bool = False
    gate_completion_ratio: bool = False
    """The completion ratio depends on its window (see steady.py); reported, not gated."""
    steady: SteadyCriterion = SteadyCriterion()


def workload_for(rate: float, duration_s: float, scale: Scale, seed: int):  # noqa: ANN201
    n = max(2, round(rate * duration_s))
    wl = lognormal_workload(
        n, mu=PAPER_MU, sigma=PAPER_SIGMA, min_tokens=PAPER_MIN,
        max_tokens=scale.max_input_tokens,
        scaling=Scaling(output_tokens=scale.output_tokens, max_input_tokens=scale.max_input_tokens),
        seed=seed, stratify_block=scale.length_stratify_block,
    )  # fmt: skip
    return wl, schedule_for(wl, rate=rate, seed=seed)


def offload_fraction(routing: dict[str, float]) -> float | None:
    total = sum(routing.values())
    off = sum(v for k, v in routing.items() if k.split("/")[1:2] in (["offload"], ["prfaas"]))
    return off / total if total else None


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def analyze(results: Results, offered: float, scale: Scale, crit: Criterion) -> dict[str, Any]:
    recs = results.records
    # Successful requests with their end-to-end latency (known for each of them).
    ok = [(r, r.e2e_s) for r in recs if r.ok and r.e2e_s is not None]
    s = results.summary
    sends = [r.start_s for r in recs]
    last_send = max(sends) if sends else 0.0
    lat = _pct([e2e for _, e2e in ok], 50) or 0.0
    window = last_send - lat
    done_in = sum(1 for r, e2e in ok if lat <= r.start_s + e2e <= last_send)
    arrived = sum(1 for r in recs if r.start_s <= window)
    ratio = done_in / arrived if arrived else None
    steady = done_in / window if window > 0 else None
    tpot = [
        (e2e - r.ttft_s) / (r.completion_tokens - 1)
        for r, e2e in ok
        if r.ttft_s is not None and r.completion_tokens > 1
    ]
    itl = [x for r, _ in ok for x in r.itl_s]
    step = scale.decode_step_s
    itl_p90, tpot_p90 = _pct(itl, 90), _pct(tpot, 90)
    egress_avg = None
    if results.egress and len(results.egress) >= 2 and s.egress_bytes is not None:
        span = results.egress[-1].t_s - results.egress[0].t_s
        egress_avg = s.egress_bytes / span if span > 0 else None
    checks = {
        "no_failures": s.failed == 0,
        "completion_ratio": ratio is not None and ratio >= crit.min_completion_ratio,
        "itl_p90": itl_p90 is not None and itl_p90 <= crit.max_itl_factor * step,
        "tpot_p90": tpot_p90 is not None and tpot_p90 <= crit.max_itl_factor * step,
        "steady_state": False,
    }
    steady_test = steady_state(results, offered, step, crit.steady)
    checks["steady_state"] = bool(steady_test["steady"])
    ungated = {"itl_p90"} - ({"itl_p90"} if crit.gate_itl else set())
    if not crit.gate_completion_ratio:
        ungated.add("completion_ratio")
    return {
        "offered_rps": offered,
        "requests": s.requests,
        "failed": s.failed,
        "errors": s.errors,
        "send_span_s": last_send,
        "latency_floor_s": lat,
        "completion_ratio": ratio,
        "throughput_rps": steady,
        "throughput_whole_run_rps": s.throughput_rps,
        "ttft_mean_s": s.ttft_mean_s,
        "ttft_p90_s": s.ttft_p90_s,
        "itl_p90_s": itl_p90,
        "tpot_p90_s": tpot_p90,
        "egress_avg_bytes_per_s": egress_avg,
        "egress_peak_bytes_per_s": s.egress_peak_bytes_per_s,
        "offload_fraction": offload_fraction(results.routing),
        "routing": results.routing,
        "max_send_lag_s": s.max_send_lag_s,
        "steady_state": steady_test,
        "checks": checks,
        "sustainable": all(v for k, v in checks.items() if k not in ungated),
    }


def run_point(
    running: Running, rate: float, duration_s: float, scale: Scale, seed: int,
    crit: Criterion, timeout_s: float = 600.0,
) -> tuple[dict[str, Any], Results]:  # fmt: skip
    wl, schedule = workload_for(rate, duration_s, scale, seed)
    config = LoadConfig(
        timeout_s=timeout_s,
        metrics_urls=(running.router_metrics, *running.worker_metrics),
        egress_urls=tuple(running.prfaas_metrics),
        progress=False,
        label=f"{running.policy}@{rate:.2f} ",
    )
    results = run_load(running.http, wl, schedule, config)
    point = analyze(results, rate, scale, crit)
    point["seed"] = seed
    point["stages"] = results.stages
    return point, results


def best_sustainable(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The sustainable point with the highest measured throughput."""
    ok = [p for p in points if p["sustainable"] and p["throughput_rps"] is not None]
    return max(ok, key=lambda p: p["throughput_rps"], default=None)
