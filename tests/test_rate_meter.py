"""RateMeter: per-second rates of cumulative counts for worker load reports."""

from __future__ import annotations

import pytest

from prfaas.worker import runtime
from prfaas.worker.runtime import RateMeter


def test_rate_over_windows_and_never_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(runtime.time, "monotonic", lambda: clock[0])
    meter = RateMeter(window_s=0.5)
    assert meter.sample(0) == 0.0
    clock[0] += 0.2
    assert meter.sample(1000) == 0.0  # window not over yet: previous rate repeated
    clock[0] += 0.8
    assert meter.sample(2000) == pytest.approx(2000.0)  # 2000 in 1.0 s
    clock[0] += 1.0
    assert meter.sample(500) == 0.0  # the count dropped (a peer link went away)
    clock[0] += 1.0
    assert meter.sample(1500) == pytest.approx(1000.0)
