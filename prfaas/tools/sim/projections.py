"""`prfaas sim --projections`: the paper's §2.3 bandwidth projections, simulated, as markdown.

The paper's §2.3 multiplies a per-instance KV throughput Φ_kv by a cluster size: a 512-H200 PrfaaS
cluster at 32K mean input needs ≈ 170 Gbps for Ring-2.5-1T and ≈ 3.8 Tbps for MiniMax-M2.5, and a
10,000-GPU datacenter ≈ 1.8 Tbps. That assumes every prefill ships its KV all the time. Here the
same clusters run in the simulator under the router's threshold (the planner's t for that model and
line): the egress that really crosses the line (mean and P99 over one-second windows), the share
of the line left idle, and the cost of a 50 % line cut for ten minutes.

Models differ only in KV bytes per prefill: a model is the case study's H200/H20 profiles (prefill
times unchanged) with every KV size × Φ_kv(32K) of that model / Φ_kv(32K) of the case study's
profile, Φ_kv from the paper's Table 3 (prfaas/data/case_study/kv_throughput.toml), so one H200
instance prefilling 32K tokens back to back ships the model's Table 3 rate. Only the 32K column is
used: the emulated KV size is linear in length, so the model's Φ_kv(l) has the case study's shape
(Ring-2.5-1T's falls faster with length in Table 3, MiniMax-M2.5's rises to 32K). The
deployment is the case study's mix (4 H200 PrfaaS + 8 H20 PD instances, 100 Gbps) × a factor:
×16 is 512 H200 (64 instances) + 1,024 H20; ×104 is 1,248 instances, 9,984 GPUs. Paper-scale
inputs: 1024 output tokens at 25 ms per step (the case study's SLO), no time or byte scaling
other than the model's.
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np

from prfaas.data import case_study_file
from prfaas.planner.model import gbps_to_bytes_per_s
from prfaas.tools.experiment.scale import PRFAAS_PROFILE, Scale, predict, scaled_profile
from prfaas.tools.experiment.sweep import offload_fraction
from prfaas.tools.loadgen.workloads import Scaling
from prfaas.tools.sim import workload as sim_workload
from prfaas.tools.sim.analysis import egress_windows
from prfaas.tools.sim.case_inputs import decode_pool_bytes
from prfaas.tools.sim.experiment_inputs import experiment_config
from prfaas.tools.sim.link import LinkChange
from prfaas.tools.sim.simulation import SimResult, Simulation

REFERENCE_TOKENS = 32768
"""§2.3's mean input length."""
H200_INSTANCES_512 = 64
"""512 H200 GPUs as 8-GPU instances."""


KV_RATES_FILE = "kv_throughput.toml"


@dataclass(frozen=True)
class KvRates:
    """The paper's Table 3 (Φ_kv per 8×H200 instance) and §2.3's stated egress figures."""

    gpus_per_instance: int
    seq_len_tokens: tuple[int, ...]
    phi_kv_gbps: dict[str, tuple[float, ...]]
    stated: tuple[dict[str, Any], ...]

    def phi(self, model: str, tokens: int) -> float:
        """Φ_kv of one instance at `tokens` (Gbps): the table's value at its columns, linear
        between them."""
        return float(np.interp(tokens, self.seq_len_tokens, self.phi_kv_gbps[model]))

    def all_offload_gbps(self, model: str, gpus: int, tokens: int) -> float:
        """§2.3's arithmetic: every instance of a `gpus`-GPU PrfaaS cluster prefilling `tokens`
        back to back ships gpus / gpus_per_instance × Φ_kv(tokens)."""
        return gpus / self.gpus_per_instance * self.phi(model, tokens)


@cache
def kv_rates() -> KvRates:
    doc = tomllib.loads(case_study_file(KV_RATES_FILE).read_text())
    return KvRates(
        gpus_per_instance=int(doc["gpus_per_instance"]),
        seq_len_tokens=tuple(int(x) for x in doc["seq_len_tokens"]),
        phi_kv_gbps={k: tuple(float(x) for x in v) for k, v in doc["phi_kv_gbps"].items()},
        stated=tuple(doc["stated"]),
    )


@dataclass(frozen=True)
class ModelKv:
    name: str
    table3: str | None
    """The model's row of Table 3 (None: the case study's own profile)."""

    def phi_32k_gbps(self) -> float:
        """Φ_kv at §2.3's 32K of one 8×H200 instance of this model."""
        if self.table3 is None:
            return case_gbps_512_h200() / H200_INSTANCES_512
        return kv_rates().phi(self.table3, REFERENCE_TOKENS)


MODELS = (
    ModelKv("case study (1T hybrid)", None),
    ModelKv("Ring-2.5-1T", "Ring-2.5-1T"),
    ModelKv("MiniMax-M2.5", "MiniMax-M2.5"),
)


def case_gbps_512_h200() -> float:
    """The case study's H200 profile: 64 instances each prefilling 32K tokens back to back."""
    prof = scaled_profile(PRFAAS_PROFILE, Scale(byte_factor=1.0))
    kv = float(np.interp(REFERENCE_TOKENS, prof.input_tokens, prof.kv_bytes))
    secs = float(np.interp(REFERENCE_TOKENS, prof.input_tokens, prof.prefill_seconds))
    return H200_INSTANCES_512 * kv / secs * 8 / 1e9


def paper_scale(byte_factor: float) -> Scale:
    return Scale(time_factor=1.0, byte_factor=byte_factor, link_gbps=100.0, output_tokens=1024,
                 decode_step_ms=25.0)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    model: ModelKv
    instances_factor: int
    duration_s: float
    cut_at_s: float | None = None
    cut_for_s: float = 600.0
    cut_fraction: float = 0.5


def simulate(sc: Scenario, seed: int = 0) -> tuple[dict[str, Any], SimResult]:
    base = case_gbps_512_h200()
    factor = sc.model.phi_32k_gbps() * H200_INSTANCES_512 / base
    scale = paper_scale(factor)
    _, prediction = predict(scale)
    plan = prediction["policies"]["prfaas"]
    k = sc.instances_factor
    sched: tuple[LinkChange, ...] = ()
    if sc.cut_at_s is not None:
        sched = (LinkChange(sc.cut_at_s, sc.cut_fraction),
                 LinkChange(sc.cut_at_s + sc.cut_for_s, 1.0))  # fmt: skip
    cfg = experiment_config("prfaas", prediction, scale, instances_factor=k, link_schedule=sched)
    # The experiment's 256 MB pool is its scaled-down bytes; at paper scale, case_inputs' pool.
    cfg = replace(cfg, cache_budget_bytes=decode_pool_bytes(cfg))
    rate = 0.9 * plan["lambda_max_rps"] * k
    scaling = Scaling(output_tokens=scale.output_tokens, max_input_tokens=scale.max_input_tokens)
    requests = sim_workload.lognormal(max(2, round(rate * sc.duration_s)), rate,
                                      max_tokens=scale.max_input_tokens, scaling=scaling,
                                      seed=seed)  # fmt: skip
    started = time.perf_counter()
    result = Simulation(cfg, seed).run(requests, until_s=None)
    line = gbps_to_bytes_per_s(scale.link_gbps) * k
    eg = egress_windows(result)
    row = {
        "model": sc.model.name, "byte_factor": factor, "instances": result.stats["instances"],
        "gpus": 8 * result.stats["instances"], "prfaas_instances": cfg.n_prfaas,
        "threshold_tokens": plan["threshold_tokens"], "rate_rps": rate,
        "line_gbps": scale.link_gbps * k,
        "all_offload_gbps": base * factor * cfg.n_prfaas / H200_INSTANCES_512,
        "egress_mean_gbps": _gbps(eg["mean"]), "egress_p99_gbps": _gbps(eg["p99"]),
        "idle_share": None if eg["mean"] is None else 1.0 - eg["mean"] / line,
        "offload_fraction": offload_fraction(result.routing),
        "wall_s": time.perf_counter() - started, "events": result.stats["events"],
    }  # fmt: skip
    return row, result


def _gbps(bytes_per_s: float | None) -> float | None:
    return None if bytes_per_s is None else bytes_per_s * 8 / 1e9


def window_stats(result: SimResult, start: float, end: float) -> dict[str, float]:
    """Requests arriving in [start, end): completed per second and TTFT mean/P90 (s), failures."""
    reqs = [r for r in result.requests if start <= r.arrival_s < end]
    ttft = [r.first_token_s - r.arrival_s for r in reqs if r.first_token_s is not None
            and r.error is None]  # fmt: skip
    done = sum(1 for r in reqs if r.finish_s is not None and r.error is None)
    return {
        "arrived": float(len(reqs)), "completed_rps": done / (end - start),
        "ttft_mean_s": float(np.mean(ttft)) if ttft else float("nan"),
        "ttft_p90_s": float(np.percentile(ttft, 90)) if ttft else float("nan"),
        "failed": float(len(reqs) - done),
    }  # fmt: skip


def cut_cost(model: ModelKv, factor: int, cut_at: float, cut_for: float, seed: int = 0
             ) -> dict[str, Any]:  # fmt: skip
    """The same requests with and without a 50 % cut of `cut_for` s at `cut_at`; the window is
    the requests that arrive during the cut."""
    duration = cut_at + cut_for + 300.0
    _, plain = simulate(Scenario(model, factor, duration), seed)
    _, cut = simulate(Scenario(model, factor, duration, cut_at_s=cut_at, cut_for_s=cut_for), seed)
    w = (cut_at, cut_at + cut_for)
    return {"model": model.name, "instances_factor": factor, "cut_at_s": cut_at,
            "cut_for_s": cut_for, "no_cut": window_stats(plain, *w),
            "cut": window_stats(cut, *w), "after_cut": window_stats(cut, w[1], w[1] + 300.0),
            "after_no_cut": window_stats(plain, w[1], w[1] + 300.0)}  # fmt: skip


def stated_checks(rates: KvRates | None = None) -> list[dict[str, Any]]:
    """Each §2.3 figure next to gpus / gpus_per_instance × Φ_kv(length) from Table 3, and whether
    the arithmetic gives it ("approx": equal at the stated two significant digits; "below": under
    it)."""
    rates = rates or kv_rates()
    out = []
    for st in rates.stated:
        got = rates.all_offload_gbps(st["model"], st["gpus"], st["seq_len_tokens"])
        if st["relation"] == "approx":
            ok = float(f"{got:.2g}") == float(st["gbps"])
        elif st["relation"] == "below":
            ok = got < st["gbps"]
        else:
            raise ValueError(f"unknown relation {st['relation']!r}")
        out.append({**st, "phi_kv_gbps": rates.phi(st["model"], st["seq_len_tokens"]),
                    "arithmetic_gbps": got, "reproduced": ok})  # fmt: skip
    return out


def _f(x: float | None, fmt: str = "{:.0f}") -> str:
    return "–" if x is None or x != x else fmt.format(x)


def render(rows: list[dict[str, Any]], cuts: list[dict[str, Any]], command: str,
           duration_s: float) -> str:  # fmt: skip
    out = [
        "# Bandwidth projections (paper §2.3), simulated",
        "",
        f"Generated by `{command}` (prfaas/tools/sim/projections.py; do not edit by hand).",
        "",
        __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "",
        f"Each row: {duration_s:.0f} simulated seconds of Poisson log-normal arrivals (μ 9.90, "
        "σ 1.00, mean ≈ 32K tokens) at 0.9 × the planner's Λ_max; egress is per one-second "
        "window while requests were in flight. *All-offload* is §2.3's arithmetic for this "
        "cluster (every H200 prefilling 32K prompts back to back).",
        "",
        "§2.3's own figures from Table 3 (gpus / 8 × Φ_kv at the length; checked by "
        "tests/sim/test_projections.py):",
        "",
        "| §2.3 case | Φ_kv Gbps per instance | gpus / 8 × Φ_kv | paper states |",
        "| --- | ---: | ---: | --- |",
        *(
            f"| {c['what']} | {c['phi_kv_gbps']:.2f} | {c['arithmetic_gbps']:.0f} Gbps | "
            f"{'≈' if c['relation'] == 'approx' else 'below '}{c['gbps']:.0f} Gbps |"
            for c in stated_checks()
        ),
        "",
        "| model | GPUs (PrfaaS inst.) | line Gbps | t (tokens) | offered req/s | all-offload "
        "Gbps | egress mean Gbps | egress P99 Gbps | line idle | offload fraction |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['gpus']} ({r['prfaas_instances']}) | {r['line_gbps']:.0f} | "
            f"{_f(r['threshold_tokens'])} | {r['rate_rps']:.1f} | {r['all_offload_gbps']:.0f} | "
            f"{_f(r['egress_mean_gbps'])} | {_f(r['egress_p99_gbps'])} | "
            f"{_f(None if r['idle_share'] is None else 100 * r['idle_share'], '{:.0f} %')} | "
            f"{_f(r['offload_fraction'], '{:.2f}')} |"
        )
    out += ["", "## A 50 % line cut for ten minutes", ""]
    out += ["Same requests with and without the cut; TTFT and completions of the requests that "
            "arrive during the cut (and in the 300 s after it).", "",
            "| model | GPUs | window | completed req/s no cut → cut | TTFT mean s no cut → cut | "
            "TTFT P90 s no cut → cut | failed no cut → cut |",
            "| --- | ---: | --- | --- | --- | --- | --- |"]  # fmt: skip
    for c in cuts:
        gpus = 96 * c["instances_factor"]
        for label, a, b in (("during", c["no_cut"], c["cut"]),
                            ("300 s after", c["after_no_cut"], c["after_cut"])):  # fmt: skip
            out.append(
                f"| {c['model']} | {gpus} | {label} | {a['completed_rps']:.2f} → "
                f"{b['completed_rps']:.2f} | {a['ttft_mean_s']:.2f} → {b['ttft_mean_s']:.2f} | "
                f"{a['ttft_p90_s']:.2f} → {b['ttft_p90_s']:.2f} | {a['failed']:.0f} → "
                f"{b['failed']:.0f} |"
            )
    return "\n".join(out) + "\n"
