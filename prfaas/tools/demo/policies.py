"""Part 2 of the demo: the three routing policies on an emulated heterogeneous pair of clusters,
at an offered load above what both baselines can carry and below what prfaas can.

The clusters are the paper's case study scaled down (prfaas.tools.experiment.scale): a PrfaaS cluster
with one worker timed by the H200 prefill profile, a PD cluster with two workers timed by the H20
profile, the KV sizes of the hybrid model ÷100 over one 0.15 Gbit/s link (the relays in front of
the PD workers share one rate cap; at ÷100 bytes it stands for a 15 Gbit/s cross-datacenter link).
Each policy gets the planner's split and threshold for those inputs (as `prfaas experiment`
does), the same Poisson arrivals of the paper's log-normal prompt lengths, and a fresh deployment.

Why this link: the paper's case is that PrfaaS pays off where the cross-datacenter link, not only
compute, is scarce. naive-hetero ships every request's KV (short prompts' recurrent state too) over
it, so the link bounds it (planned 2.9 req/s); prfaas ships only prompts longer than t and
prefills the rest on the PD cluster (5.7); homogeneous-pd prefills everything on the H20s (2.3).
The offered rate is a multiple of naive-hetero's planned capacity, so both baselines saturate.
(Measured before the relays shared one cap: at 1 Gbit/s neither link nor load bound naive-hetero,
and at 0.15 Gbit/s per relay naive-hetero, decoding on two PD workers, had twice prfaas's link.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prfaas.launcher.deployment import Deployment
from prfaas.tools.experiment.deploy import topology_for
from prfaas.tools.experiment.scale import Scale, predict
from prfaas.tools.experiment.sweep import offload_fraction, workload_for
from prfaas.tools.loadgen.compare import (
    POLICIES,
    Comparison,
    DeploymentFactory,
    Target,
    compare_policies,
)
from prfaas.tools.loadgen.results import Summary
from prfaas.tools.loadgen.runner import LoadConfig
from prfaas.topology import DEFAULT_TOPOLOGY

# One PrfaaS worker and two PD workers (the homogeneous baseline gets the two PD workers); profiled
# prefill times ×0.1, 4 output tokens × 100 ms, one 0.15 Gbit/s link: planned capacities of about
# 5.7 (prfaas), 2.9 (naive-hetero) and 2.3 (homogeneous-pd) req/s.
DEMO_SCALE = Scale(time_factor=0.1, output_tokens=4, decode_step_ms=1000.0, n_prfaas=1, n_pd=2,
                   n_homogeneous=2, link_gbps=0.15)  # fmt: skip
RATE_BASELINE = "naive-hetero"
"""The offered rate is `rate_factor` × this policy's planned capacity (the stronger baseline)."""


@dataclass
class PolicyRun:
    comparison: Comparison
    prediction: dict[str, Any]
    """The planner's view of the same inputs (`prfaas.tools.experiment.scale.predict`)."""
    rate_rps: float

    def capacity(self, policy: str) -> float:
        return float(self.prediction["policies"][policy]["lambda_max_rps"])

    def threshold(self) -> int:
        return int(self.prediction["policies"]["prfaas"]["threshold_tokens"])

    def offload(self, policy: str) -> float | None:
        return offload_fraction(self.comparison.runs[policy].routing)

    def capacity_table(self) -> str:
        """The planner's Λ_max beside what each policy carried at the offered rate."""
        lines = [
            "| policy | planned Λ (req/s) | offered | measured (req/s) | served "
            "| TTFT P90, all sent | TTFT P90, served only |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, results in self.comparison.runs.items():
            s = results.summary
            lines.append(
                f"| {name} | {self.capacity(name):.2f} | {self.rate_rps:.2f} | "
                f"{s.throughput_rps:.2f} | {s.succeeded}/{s.requests} | {all_sent_p90(s)} | "
                f"{_s(s.ttft_p90_s)} |"
            )
        return "\n".join(lines)

    def explanation(self) -> list[str]:
        """Two lines under the table, from this run's numbers and the planner's."""
        runs = self.comparison.runs
        homog, naive = runs["homogeneous-pd"].summary, runs["naive-hetero"].summary
        prfaas = runs["prfaas"].summary
        offload = self.offload("prfaas")
        share = "-" if offload is None else f"{offload:.0%}"
        gbps = DEMO_SCALE.link_gbps
        return [
            f"At {self.rate_rps:.1f} req/s ({self._load('homogeneous-pd')} homogeneous-pd's "
            f"planned capacity, {self._load('naive-hetero')} naive-hetero's, "
            f"{self._load('prfaas')} prfaas's): homogeneous-pd prefills all on the PD cluster's H20s ({homog.throughput_rps:.2f} "
            f"req/s, TTFT P90 over all sent {all_sent_p90(homog)}); naive-hetero prefills all on the PrfaaS H200 "
            f"and ships every KV over the {gbps:g} Gbit/s link ({naive.throughput_rps:.2f} req/s, "
            f"served {naive.succeeded}/{naive.requests}, TTFT P90 over all sent "
            f"{all_sent_p90(naive)}: a refused request never gets a first token).",
            f"prfaas offloads only prompts longer than t = {self.threshold()} tokens ({share} of "
            f"requests; {gbps:g} Gbit/s carries their KV) and prefills the rest locally: both "
            f"clusters work ({prfaas.throughput_rps:.2f} req/s, served "
            f"{prfaas.succeeded}/{prfaas.requests}, TTFT P90 over all sent "
            f"{all_sent_p90(prfaas)}).",
        ]

    def _load(self, policy: str) -> str:
        return f"{self.rate_rps / self.capacity(policy):.2f}x"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def all_sent_p90(s: Summary) -> str:
    """TTFT P90 over every request sent; '∞ (N % failed)' where over 10 % got no first token."""
    if s.ttft_p90_all_sent_s is not None:
        return _s(s.ttft_p90_all_sent_s)
    if s.requests == 0:
        return "-"
    return f"∞ ({s.failed / s.requests:.0%} failed)"


def factory(prediction: dict[str, Any], scale: Scale, port_base: int) -> DeploymentFactory:
    """Deployments of the planner's split for each policy, on ports from `port_base`."""

    class Planned:
        def __init__(self, policy: str, log_dir: Path) -> None:
            topo = topology_for(policy, prediction, scale, port_base)
            self.prfaas_workers = topo.prfaas_workers
            self.deployment = Deployment(
                topo, DEFAULT_TOPOLOGY, log_dir, metrics_base_port=port_base + 700
            )

        def start(self) -> Target:
            ep = self.deployment.start()
            return Target(ep.http, ep.metrics, ep.metrics[1 : 1 + self.prfaas_workers])

        def stop(self) -> None:
            self.deployment.stop()

    return Planned


def run_policies(
    *, rate_factor: float, duration_s: float, log_dir: Path, port_base: int, seed: int = 1
) -> PolicyRun:
    """Every policy at `rate_factor` × the planner's naive-hetero capacity, `duration_s` of
    arrivals each; raises RuntimeError/TimeoutError when a deployment cannot start."""
    _, prediction = predict(DEMO_SCALE)
    rate = rate_factor * float(prediction["policies"][RATE_BASELINE]["lambda_max_rps"])
    workload, schedule = workload_for(rate, duration_s, DEMO_SCALE, seed)
    comparison = compare_policies(
        workload,
        schedule,
        policies=POLICIES,
        config=LoadConfig(timeout_s=300.0),
        warmup=1,
        log_dir=log_dir,
        factory=factory(prediction, DEMO_SCALE, port_base),
    )
    return PolicyRun(comparison, prediction, rate)
