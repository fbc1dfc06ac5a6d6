"""Case files (the paper's case_study.toml format) and the three deployments it compares.

`load_case` reads the TOML into a `Case`; `plan` runs the grid search for every deployment and
returns a `PlanResult`. Policies: `prfaas` (search t and N_p), `homogeneous-pd` (no PrfaaS, p = 0,
search N_p), `naive-hetero` (every prefill on PrfaaS, p = 1, every PD instance decodes).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from prfaas.planner.model import gbps_to_bytes_per_s
from prfaas.planner.profiles import DecodeProfile, PrefillProfile, load_profile_csv
from prfaas.planner.search import ClusterModel, Grid, OperatingPoint, evaluate, search
from prfaas.planner.workload import LengthDistribution, TruncatedLogNormal

POLICIES = ("prfaas", "homogeneous-pd", "naive-hetero")


@dataclass(frozen=True)
class Deployment:
    """One deployment of a case: hardware counts and the routing policy."""

    name: str
    policy: str
    n_prfaas: int
    n_pd: int
    prfaas_profile: PrefillProfile | None
    pd_profile: PrefillProfile


@dataclass(frozen=True)
class Case:
    """Everything the planner needs: link, SLO decode constants, workload and deployments."""

    link_gbps: float
    decode: DecodeProfile
    output_tokens: float
    lengths: LengthDistribution
    deployments: dict[str, Deployment] = field(default_factory=dict)

    def cluster_model(self, dep: Deployment) -> ClusterModel:
        return ClusterModel(
            pd_profile=dep.pd_profile,
            decode=self.decode,
            output_tokens=self.output_tokens,
            n_pd=dep.n_pd,
            n_prfaas=dep.n_prfaas,
            prfaas_profile=dep.prfaas_profile,
            link_bytes_per_s=gbps_to_bytes_per_s(self.link_gbps),
        )


@dataclass(frozen=True)
class DeploymentPlan:
    """The planner's answer for one deployment."""

    deployment: Deployment
    point: OperatingPoint
    grid: Grid | None
    """The full t × N_p grid (prfaas policy only), for plots."""

    @property
    def threshold_tokens(self) -> float | None:
        return self.point.threshold if self.deployment.policy == "prfaas" else None


@dataclass(frozen=True)
class PlanResult:
    """Per-deployment plans, keyed like the case file's [deployments.*] tables."""

    case: Case
    plans: dict[str, DeploymentPlan]


def _lengths_from_toml(spec: dict, prefix_hit_rate: float) -> LengthDistribution:
    if spec.get("distribution") != "lognormal":
        raise ValueError(f"unsupported input_length distribution: {spec.get('distribution')!r}")
    dist = TruncatedLogNormal(
        float(spec["mu"]), float(spec["sigma"]), float(spec["min"]), float(spec["max"])
    )
    # A uniform prefix hit rate h leaves (1 - h) of every prompt uncached.
    return dist.scaled(1.0 - prefix_hit_rate) if prefix_hit_rate > 0 else dist


def load_case(path: str | Path) -> Case:
    """Parse a case TOML; profile CSV paths are relative to the TOML's folder."""
    path = Path(path)
    doc = tomllib.loads(path.read_text())
    hw = doc["hardware"]
    profiles = {
        name: load_profile_csv(path.parent / spec["prefill_profile"]) for name, spec in hw.items()
    }
    decode_hw = next((spec for spec in hw.values() if "decode_max_batch" in spec), None)
    if decode_hw is None:
        raise ValueError("case file: no [hardware.*] table has decode_max_batch")
    wl = doc["workload"]
    deployments = {}
    for name, spec in doc["deployments"].items():
        if spec["policy"] not in POLICIES:
            raise ValueError(f"deployment {name}: unknown policy {spec['policy']!r}")
        n_prfaas = int(spec.get("prfaas_instances", 0))
        deployments[name] = Deployment(
            name=name,
            policy=spec["policy"],
            n_prfaas=n_prfaas,
            n_pd=int(spec["pd_instances"]),
            prfaas_profile=profiles[spec["prfaas_hardware"]] if n_prfaas else None,
            pd_profile=profiles[spec["pd_hardware"]],
        )
    return Case(
        link_gbps=float(doc["link"]["bandwidth_gbps"]),
        decode=DecodeProfile(
            int(decode_hw["decode_max_batch"]), float(decode_hw["decode_step_seconds"])
        ),
        output_tokens=float(wl["output_tokens"]),
        lengths=_lengths_from_toml(wl["input_length"], float(wl.get("prefix_hit_rate", 0.0))),
        deployments=deployments,
    )


def policy_model(case: Case, dep: Deployment) -> ClusterModel:
    """The cluster model the deployment's policy plans with (homogeneous-pd: no PrfaaS)."""
    model = case.cluster_model(dep)
    if dep.policy == "homogeneous-pd":
        return replace(model, n_prfaas=0, prfaas_profile=None)
    return model


def plan_deployment(case: Case, dep: Deployment) -> DeploymentPlan:
    """Run the search that the deployment's policy calls for."""
    model = policy_model(case, dep)
    if dep.policy == "prfaas":
        point, grid = search(model, case.lengths)
        return DeploymentPlan(dep, point, grid)
    if dep.policy == "homogeneous-pd":
        point, _ = search(model, case.lengths, thresholds=[math.inf], n_p_values=range(1, dep.n_pd))
        return DeploymentPlan(dep, point, None)
    # naive-hetero: every request's prefill goes to PrfaaS (t below every length), N_p = 0.
    return DeploymentPlan(dep, evaluate(model, case.lengths, -1.0, 0), None)


def plan(case: Case) -> PlanResult:
    """Plan every deployment of the case."""
    return PlanResult(
        case, {name: plan_deployment(case, d) for name, d in case.deployments.items()}
    )
