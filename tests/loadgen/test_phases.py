"""The phase schedule (loadgen/phases.py): parsing, Poisson windows per phase, the class mix."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.tools.loadgen.phases import (
    LengthClasses,
    Phase,
    parse_phases,
    phase_bounds,
    phased_schedule,
    phased_workload,
)
from prfaas.tools.loadgen.workloads import Scaling


def test_parse() -> None:
    assert parse_phases("120:1.0:0.1, 60:0.5:0.9,") == [Phase(120, 1.0, 0.1), Phase(60, 0.5, 0.9)]
    for bad in ("", "120:1.0", "120:1.0:1.5", "0:1:0", "10:-1:0", "a:1:0"):
        with pytest.raises(ValueError):
            parse_phases(bad)


def test_bounds_are_back_to_back() -> None:
    assert phase_bounds([Phase(10, 1, 0), Phase(5, 1, 0), Phase(20, 1, 0)]) == [
        (0, 10), (10, 15), (15, 35)
    ]  # fmt: skip


def test_each_phase_sends_at_its_own_rate_inside_its_window() -> None:
    phases = [Phase(400, 2.0, 0.0), Phase(400, 0.5, 0.0), Phase(400, 2.0, 0.0)]
    times, phase_of = phased_schedule(phases, seed=3)
    assert times == sorted(times) and len(times) == len(phase_of)
    for k, (start, end) in enumerate(phase_bounds(phases)):
        mine = [t for t, p in zip(times, phase_of, strict=True) if p == k]
        assert all(start <= t < end for t in mine)
        # Poisson count: mean rate x duration, sd sqrt(mean); 4 sd is a loose bound.
        mean = phases[k].rate_rps * phases[k].duration_s
        assert abs(len(mine) - mean) < 4 * np.sqrt(mean)
    assert phased_schedule(phases, seed=3) == (times, phase_of)  # deterministic per seed


def test_the_mix_follows_the_phase_and_lengths_stay_in_their_class() -> None:
    phases = [Phase(300, 1.0, 0.1), Phase(300, 1.0, 0.9)]
    classes = LengthClasses(short_max_tokens=1000, long_min_tokens=8000, max_tokens=20000)
    load = phased_workload(phases, classes=classes, scaling=Scaling(output_tokens=4), seed=1)
    wl = load.workload
    assert len(wl.requests) == len(load.schedule) == len(load.phase_of) == len(wl.params["is_long"])
    for k, frac in enumerate((0.1, 0.9)):
        longs = [lg for lg, p in zip(wl.params["is_long"], load.phase_of, strict=True)
                 if p == k]  # fmt: skip
        share = sum(longs) / len(longs)
        assert abs(share - frac) < 4 * np.sqrt(frac * (1 - frac) / len(longs))
    for r, long_one in zip(wl.requests, wl.params["is_long"], strict=True):
        assert r.output_tokens == 4
        if long_one:
            assert 8000 <= r.input_tokens <= 20000
        else:
            assert 128 <= r.input_tokens <= 1000
    # the prompts are unique text of exactly the requested length (BOS included)
    assert len({r.prompt for r in wl.requests}) == len(wl.requests)
    assert all(len(r.prompt) + 1 == r.input_tokens for r in wl.requests)


def test_scaling_applies_after_the_class_is_drawn() -> None:
    phases = [Phase(200, 1.0, 1.0)]
    classes = LengthClasses(short_max_tokens=1000, long_min_tokens=8000, max_tokens=20000)
    load = phased_workload(phases, classes=classes, scaling=Scaling(length_scale=0.1), seed=2)
    assert all(800 <= r.input_tokens <= 2000 for r in load.workload.requests)
    with pytest.raises(ValueError):
        phased_workload(phases, classes=LengthClasses(short_max_tokens=9000, long_min_tokens=8000))
