"""Length distributions: the log-normal closed forms and trace-derived uncached lengths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from prfaas.data import trace_file
from prfaas.planner.workload import (
    EmpiricalLengths,
    TruncatedLogNormal,
    uncached_lengths_from_trace,
)


def _numeric_moments(dist: TruncatedLogNormal, t: float) -> tuple[float, float, float]:
    """P(L>t), E[L|L<=t], E[L|L>t] by trapezoid integration of the truncated pdf."""
    x = np.exp(np.linspace(math.log(dist.min_length), math.log(dist.max_length), 200_001))
    pdf = np.exp(-((np.log(x) - dist.mu) ** 2) / (2 * dist.sigma**2)) / x
    pdf /= np.trapezoid(pdf, x)
    lo = x <= t
    m_lo = np.trapezoid(pdf[lo], x[lo])
    m_hi = 1 - m_lo
    mean_lo = np.trapezoid(pdf[lo] * x[lo], x[lo]) / m_lo
    mean_hi = (np.trapezoid(pdf * x, x) - mean_lo * m_lo) / m_hi
    return m_hi, mean_lo, mean_hi


@pytest.mark.parametrize("t", [2000.0, 20000.0, 60000.0])
def test_truncated_lognormal_matches_integration(t: float) -> None:
    dist = TruncatedLogNormal(9.0, 0.8, 128, 65536)
    split = dist.split(np.array([t]))
    p, l_short, l_long = _numeric_moments(dist, t)
    assert split.p[0] == pytest.approx(p, rel=1e-3)
    assert split.l_short[0] == pytest.approx(l_short, rel=1e-3)
    assert split.l_long[0] == pytest.approx(l_long, rel=1e-3)


def test_truncated_lognormal_ends() -> None:
    dist = TruncatedLogNormal(9.0, 0.8, 128, 65536)
    split = dist.split(np.array([0.0, 1e9]))
    assert split.p.tolist() == [1.0, 0.0]
    assert split.l_long[0] == pytest.approx(dist.mean)
    assert split.l_short[1] == pytest.approx(dist.mean)


def test_scaled_halves_mean() -> None:
    dist = TruncatedLogNormal(9.0, 0.8, 128, 65536)
    assert dist.scaled(0.5).mean == pytest.approx(dist.mean / 2, rel=1e-9)


def test_uncached_lengths_unbounded_prefix_cache(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 0, "input_length": 1400, "output_length": 5, "hash_ids": [1, 2, 3]},
        # out of order on disk: replayed by timestamp
        {"timestamp": 30, "input_length": 100, "output_length": 5, "hash_ids": [2]},
        {"timestamp": 10, "input_length": 1600, "output_length": 5, "hash_ids": [1, 2, 4]},
        {"timestamp": 20, "input_length": 1536, "output_length": 5, "hash_ids": [1, 2, 3]},
        {"timestamp": 25, "input_length": 700, "output_length": 5, "hash_ids": [9, 1]},
    ]
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # 1400 cold; 1600 - 2 blocks; fully cached -> 1 token; 9 is new so no prefix hit; [2] seen.
    assert uncached_lengths_from_trace(path, block_size=512) == [1400, 576, 1, 700, 1]


def test_real_trace_has_prefix_reuse() -> None:
    path = trace_file("mooncake_conversation_trace.jsonl")
    raw = [json.loads(line)["input_length"] for line in path.open()]
    uncached = EmpiricalLengths.from_samples(uncached_lengths_from_trace(path))
    assert uncached.lengths.size == len(raw)
    assert uncached.mean < np.mean(raw)
