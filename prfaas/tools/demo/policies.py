"""Part 2 of the demo: the three routing policies on an emulated heterogeneous pair of clusters,
at an offered load above what homogeneous PD can prefill.

The clusters are the paper's case study scaled down (prfaas.tools.experiment.scale): a PrfaaS cluster
with one worker timed by the H200 prefill profile, a PD cluster with two workers timed by the H20
profile, the KV sizes of the hybrid model over a 1 Gbit/s relay (the paper's 100 Gbps at ÷100
bytes). Each policy gets the planner's split and threshold for those inputs (as `prfaas
experiment` does), the same Poisson arrivals of the paper's log-normal prompt lengths, and a fresh
deployment. The offered rate is a multiple of the planner's homogeneous-PD capacity, so that
baseline saturates. (At 1.15x naive-hetero's capacity with prefill ×0.2, measured, prfaas fell
short of its planned capacity and behind naive-hetero: the planner's split is not reached here.)
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
from prfaas.tools.loadgen.runner import LoadConfig
from prfaas.topology import DEFAULT_TOPOLOGY

# One PrfaaS worker and two PD workers (the homogeneous baseline gets the two PD workers); profiled
# prefill times ×0.1 and 4 output tokens × 100 ms: planned capacities of about 8.9 (prfaas), 6.3
# (naive-hetero) and 2.3 (homogeneous-pd) req/s.
DEMO_SCALE = Scale(time_factor=0.1, output_tokens=4, decode_step_ms=1000.0, n_prfaas=1, n_pd=2,
                   n_homogeneous=2)  # fmt: skip


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

    def explanation(self) -> list[str]:
        """Two lines under the table, from this run's numbers and the planner's."""
        runs = self.comparison.runs
        homog, naive = runs["homogeneous-pd"].summary, runs["naive-hetero"].summary
        offload = self.offload("prfaas")
        share = "-" if offload is None else f"{offload:.0%}"
        return [
            f"At {self.rate_rps:.1f} req/s homogeneous-pd, prefilling all on the PD cluster's H20s "
            f"(planned {self.capacity('homogeneous-pd'):.1f} req/s), saturates: TTFT P90 "
            f"{_s(homog.ttft_p90_s)}; naive-hetero, all on the PrfaaS H200 (planned "
            f"{self.capacity('naive-hetero'):.1f}), is not yet saturated: TTFT P90 "
            f"{_s(naive.ttft_p90_s)}.",
            f"prfaas (planned {self.capacity('prfaas'):.1f}) offloads only prompts longer than "
            f"t = {self.threshold()} tokens ({share} of requests; their small hybrid-model KV "
            f"crosses the 1 Gbit/s link) and prefills the rest locally: both clusters work.",
        ]


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


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
    """Every policy at `rate_factor` × the planner's homogeneous-PD capacity, `duration_s` of
    arrivals each; raises RuntimeError/TimeoutError when a deployment cannot start."""
    _, prediction = predict(DEMO_SCALE)
    rate = rate_factor * float(prediction["policies"]["homogeneous-pd"]["lambda_max_rps"])
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
