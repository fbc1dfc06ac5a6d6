"""Send times of an open-loop run, in seconds from its start.

Poisson arrivals at a rate (exponential gaps), or a trace's own timestamps with a time scale
(`time_scale` multiplies the trace's clock: 0.1 replays it ten times faster).
"""

from __future__ import annotations

import numpy as np

from prfaas.tools.loadgen.workloads import Workload


def poisson_schedule(
    n: int, rate: float, seed: int = 0, *, first_at_zero: bool = True
) -> list[float]:
    """`n` arrival times of a Poisson process at `rate` requests/s. The first request is sent at
    0 when `first_at_zero` (the run starts with work), otherwise after one exponential gap."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    gaps = np.random.default_rng([seed, 0x5EED]).exponential(1.0 / rate, size=n)
    if first_at_zero and n:
        gaps[0] = 0.0
    return np.cumsum(gaps).tolist()


def trace_schedule(timestamps: list[float], time_scale: float = 1.0) -> list[float]:
    """A trace's arrival times relative to its first, times `time_scale`."""
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    if not timestamps:
        return []
    start = min(timestamps)
    return [(t - start) * time_scale for t in timestamps]


def schedule_for(
    workload: Workload, *, rate: float | None = None, time_scale: float = 1.0, seed: int = 0
) -> list[float]:
    """Poisson at `rate` when given; otherwise the workload's trace timestamps, scaled."""
    if rate is not None:
        return poisson_schedule(len(workload.requests), rate, seed)
    stamps = workload.timestamps
    if stamps is None:
        raise ValueError(f"workload '{workload.name}' has no timestamps; give a rate")
    return trace_schedule(stamps, time_scale)
