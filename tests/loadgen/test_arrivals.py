from __future__ import annotations

import numpy as np
import pytest

from prfaas.tools.loadgen.arrivals import poisson_schedule, schedule_for, trace_schedule
from prfaas.tools.loadgen.workloads import RequestSpec, Workload


def test_poisson_rate_and_exponential_gaps() -> None:
    times = np.array(poisson_schedule(20000, rate=5.0, seed=7))
    gaps = np.diff(times)
    assert times[0] == 0.0 and np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(0.2, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # exponential: CV 1
    counts = np.histogram(times, bins=np.arange(0, times[-1], 10.0))[0]
    assert counts.var() / counts.mean() == pytest.approx(1.0, rel=0.25)  # Poisson counts
    assert poisson_schedule(50, 5.0, seed=7) == times[:50].tolist()
    assert poisson_schedule(50, 5.0, seed=8) != times[:50].tolist()
    with pytest.raises(ValueError):
        poisson_schedule(3, 0.0)


def test_trace_schedule_scales_time() -> None:
    assert trace_schedule([10.0, 10.5, 12.0], 0.5) == [0.0, 0.25, 1.0]
    assert trace_schedule([], 2.0) == []


def test_schedule_for_picks_rate_or_trace() -> None:
    traced = Workload("t", [RequestSpec(i, "x", 2, 1, float(i)) for i in range(3)], {})
    assert schedule_for(traced, time_scale=2.0) == [0.0, 2.0, 4.0]
    assert len(schedule_for(traced, rate=1.0)) == 3
    synthetic = Workload("s", [RequestSpec(0, "x", 2, 1)], {})
    with pytest.raises(ValueError, match="give a rate"):
        schedule_for(synthetic)
