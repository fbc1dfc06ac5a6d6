"""The paper's analytical model (Eqs. 1-8), its grid search and the case-study deployments.

Public API: `load_case`, `plan` -> `PlanResult`; `ClusterModel`, `search`, `optimal_threshold`,
`evaluate` -> `OperatingPoint`; profiles and length distributions. No torch, no processes.
"""

from prfaas.planner.case import Case, Deployment, DeploymentPlan, PlanResult, load_case, plan
from prfaas.planner.profiles import DecodeProfile, PrefillProfile, load_profile_csv
from prfaas.planner.search import (
    ClusterModel,
    Grid,
    OperatingPoint,
    evaluate,
    optimal_threshold,
    search,
)
from prfaas.planner.workload import (
    EmpiricalLengths,
    LengthDistribution,
    TruncatedLogNormal,
    uncached_lengths_from_trace,
)

__all__ = [
    "Case",
    "ClusterModel",
    "DecodeProfile",
    "Deployment",
    "DeploymentPlan",
    "EmpiricalLengths",
    "Grid",
    "LengthDistribution",
    "OperatingPoint",
    "PlanResult",
    "PrefillProfile",
    "TruncatedLogNormal",
    "evaluate",
    "load_case",
    "load_profile_csv",
    "optimal_threshold",
    "plan",
    "search",
    "uncached_lengths_from_trace",
]
