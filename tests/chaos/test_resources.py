"""RSS / file descriptor sampling from /proc and the least-squares slopes of the soak."""

from __future__ import annotations

import os
import random

import pytest

from prfaas.tools.chaos.resources import (
    FD_FLOOR,
    RSS_FLOOR_MB,
    ResourceSampler,
    count_fds,
    fit_slope,
)


def test_slope_of_an_exact_line() -> None:
    ts = [0.0, 10.0, 20.0, 30.0]
    slope = fit_slope(ts, [5.0 + 2.0 * t for t in ts])
    assert slope is not None
    assert slope.per_min == pytest.approx(120.0)
    assert slope.stderr_per_min == pytest.approx(0.0, abs=1e-9)
    assert not slope.flat(RSS_FLOOR_MB)  # 60 MiB over 30 s
    assert fit_slope([0.0, 1.0], [1.0, 2.0]) is None
    assert fit_slope([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_noise_is_flat_and_a_slow_steady_leak_is_not() -> None:
    rng = random.Random(0)
    ts = [5.0 * i for i in range(360)]  # 30 minutes every 5 s
    noisy = fit_slope(ts, [500.0 + rng.gauss(0, 5.0) for _ in ts])
    assert noisy is not None and noisy.flat(RSS_FLOOR_MB)
    # 10 MiB per 30 s (the decode worker of issue 10's soak) under the same noise.
    leak = fit_slope(ts, [500.0 + t / 3.0 + rng.gauss(0, 5.0) for t in ts])
    assert leak is not None and not leak.flat(RSS_FLOOR_MB)
    assert leak.per_min == pytest.approx(20.0, rel=0.05)
    fds = fit_slope(ts, [40.0 + (i % 3) for i in range(len(ts))])
    assert fds is not None and fds.flat(FD_FLOOR)


def test_sampler_reads_this_process_and_sees_new_descriptors() -> None:
    pid = os.getpid()
    sampler = ResourceSampler(lambda: {"me": pid, "gone": 2**22 + 7}, interval_s=1.0)
    sampler.sample(0.0)
    before = count_fds(pid)
    files = [open(os.devnull) for _ in range(20)]  # noqa: SIM115 (held open on purpose)
    try:
        sampler.sample(1.0)
        sampler.sample(2.0)
    finally:
        for f in files:
            f.close()
    (series,) = sampler.series.values()  # the pid that does not exist is skipped
    assert series.name == "me" and series.rss_mb[0] > 1.0
    assert before is not None and series.fds[1] >= series.fds[0] + 20
    report = sampler.report(warmup_s=0.0)[0]
    assert report["fd_slope"]["per_min"] > 0 and report["samples"] == 3
