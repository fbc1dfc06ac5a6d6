"""The workload of a chaos run, built from the schedule with loadgen's own pieces: log-normal
prompt lengths (short and long, around the routing threshold), Poisson arrivals, streamed."""

from __future__ import annotations

import math

from prfaas.tools.chaos.schedule import WorkloadSpec
from prfaas.tools.loadgen.arrivals import poisson_schedule
from prfaas.tools.loadgen.workloads import Scaling, Workload, lognormal_workload


def build_workload(spec: WorkloadSpec, duration_s: float) -> tuple[Workload, list[float]]:
    """The requests sent in [0, duration_s) and their send times (same spec -> same requests)."""
    arrivals = poisson_schedule(
        math.ceil(spec.rate_rps * duration_s * 2) + 10, spec.rate_rps, spec.seed
    )
    arrivals = [t for t in arrivals if t < duration_s]
    scaling = Scaling(
        length_scale=spec.length_scale,
        output_tokens=spec.output_tokens,
        max_input_tokens=spec.max_input_tokens,
    )
    return lognormal_workload(len(arrivals), scaling=scaling, seed=spec.seed), arrivals
