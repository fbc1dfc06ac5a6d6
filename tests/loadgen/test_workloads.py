from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from prfaas.data import trace_file
from prfaas.tools.loadgen.workloads import (
    Scaling,
    azure_workload,
    lognormal_workload,
    mooncake_workload,
    parse_azure_timestamp,
    sample_truncated_lognormal,
)


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def truncated_lognormal_mean(mu: float, sigma: float, low: float, high: float) -> float:
    a, b = (math.log(low) - mu) / sigma, (math.log(high) - mu) / sigma
    return math.exp(mu + sigma**2 / 2) * (_phi(b - sigma) - _phi(a - sigma)) / (_phi(b) - _phi(a))


def test_truncated_lognormal_matches_the_paper() -> None:
    draws = sample_truncated_lognormal(40000, 9.90, 1.00, 128, 131072, np.random.default_rng(1))
    assert draws.min() >= 128 and draws.max() <= 131072
    expected = truncated_lognormal_mean(9.90, 1.00, 128, 131072)
    assert expected == pytest.approx(27490, rel=0.01)  # paper.md §8.4: about 27.49K
    assert draws.mean() == pytest.approx(expected, rel=0.02)
    # log-lengths are a normal truncated at about -5 and +1.88 sigma
    a, b = (math.log(128) - 9.90) / 1.0, (math.log(131072) - 9.90) / 1.0
    pdf = [math.exp(-(x**2) / 2) / math.sqrt(2 * math.pi) for x in (a, b)]
    z = _phi(b) - _phi(a)
    var = 1 + (a * pdf[0] - b * pdf[1]) / z - ((pdf[0] - pdf[1]) / z) ** 2
    assert np.log(draws).std() == pytest.approx(math.sqrt(var), rel=0.02)
    assert math.sqrt(var) < 0.95  # the truncation is visible, so this is a real check


def test_lognormal_workload_scales_lengths_and_counts_bos() -> None:
    w = lognormal_workload(300, scaling=Scaling(length_scale=0.01), seed=3)
    inputs = np.array([r.input_tokens for r in w.requests])
    assert all(r.input_tokens == len(r.prompt) + 1 for r in w.requests)  # BOS added by the router
    assert inputs.mean() == pytest.approx(274.9, rel=0.12)
    assert {r.output_tokens for r in w.requests} == {1024}
    assert len({r.prompt[:16] for r in w.requests}) == 300  # no accidental sharing
    half = lognormal_workload(5, scaling=Scaling(length_scale=0.01, output_scale=0.5), seed=3)
    assert {r.output_tokens for r in half.requests} == {512}
    assert [r.prompt for r in half.requests] == [r.prompt for r in w.requests[:5]]  # same seed
    fixed = lognormal_workload(5, scaling=Scaling(0.01, output_tokens=7, max_input_tokens=100))
    assert {r.output_tokens for r in fixed.requests} == {7}
    assert max(r.input_tokens for r in fixed.requests) <= 100
    assert w.timestamps is None


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(
        np.frombuffer(a[:n].encode(), np.uint8) != np.frombuffer(b[:n].encode(), np.uint8)
    )
    return int(diff[0]) if diff.size else n


def test_mooncake_prompts_share_exactly_the_shared_blocks(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 0, "input_length": 1200, "output_length": 10, "hash_ids": [1, 2, 3]},
        {"timestamp": 250, "input_length": 1300, "output_length": 20, "hash_ids": [1, 2, 4]},
        {"timestamp": 1000, "input_length": 900, "output_length": 30, "hash_ids": [5, 2]},
        {"timestamp": 1500, "input_length": 700, "output_length": 40, "hash_ids": [1, 2]},
    ]
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    w = mooncake_workload(path)
    p = [r.prompt for r in w.requests]
    assert [r.input_tokens for r in w.requests] == [1200, 1300, 900, 700]
    assert [r.output_tokens for r in w.requests] == [10, 20, 30, 40]
    assert w.timestamps == [0.0, 0.25, 1.0, 1.5]
    assert _common_prefix(p[0], p[1]) == 1024  # blocks 1 and 2, then 3 vs 4 differ
    assert _common_prefix(p[0], p[2]) < 8  # different first block: random letters
    assert p[3] == p[0][:699]  # a prefix of the same blocks
    assert p[2][512:] == p[0][512:899]  # same block 2 text wherever it appears
    small = mooncake_workload(path, scaling=Scaling(length_scale=0.1), block_tokens=512)
    q = [r.prompt for r in small.requests]
    assert _common_prefix(q[0], q[1]) == 2 * 51
    assert [r.input_tokens for r in small.requests] == [120, 130, 90, 70]


def test_mooncake_real_trace_prefix_sharing_follows_hash_ids() -> None:
    trace = trace_file("mooncake_conversation_trace.jsonl")
    w = mooncake_workload(trace, limit=120, scaling=Scaling(length_scale=0.05))
    block = 26  # round(512 * 0.05)
    checked = 0
    for i, a in enumerate(w.requests):
        for b in w.requests[i + 1 :]:
            shared = 0
            for x, y in zip(a.hash_ids, b.hash_ids, strict=False):
                if x != y:
                    break
                shared += 1
            full = min(shared * block, len(a.prompt), len(b.prompt))
            common = _common_prefix(a.prompt, b.prompt)
            assert common >= full
            if shared < min(len(a.hash_ids), len(b.hash_ids)) and full < min(
                len(a.prompt), len(b.prompt)
            ):
                assert common < full + 8  # the next block differs
            checked += shared > 0
    assert checked > 50  # the trace really does share prefixes


def test_azure_parsing(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:17:04.0319600,3180,8\n"
        "2023-11-16 18:17:06.5000000,100,0\n"
    )
    w = azure_workload(path, scaling=Scaling(length_scale=0.5))
    assert w.timestamps == pytest.approx([0.0, 0.052, 2.52004])
    assert [r.input_tokens for r in w.requests] == [2404, 1590, 50]
    assert [r.output_tokens for r in w.requests] == [10, 8, 1]  # at least one token
    assert len(azure_workload(path, limit=2).requests) == 2
    assert parse_azure_timestamp("2023-11-16 18:17:04") - parse_azure_timestamp(
        "2023-11-16 18:17:03.5"
    ) == pytest.approx(0.5)
    real = trace_file("azure_llm_inference_2023_code.csv")
    r = azure_workload(real, limit=200, scaling=Scaling(length_scale=0.01))
    stamps = r.timestamps or []
    assert len(r.requests) == 200 and stamps[0] == 0.0 and stamps == sorted(stamps)


def test_stratified_lengths_give_every_window_the_mean_work() -> None:
    """Blocks of b requests take one length from each 1/b-probability stratum, in random order:
    each block's lengths sit one per stratum, so each third of a run offers about the mean work,
    where i.i.d. draws of the heavy-tailed length can differ by tens of percent (issue 12)."""
    from statistics import NormalDist

    from prfaas.tools.loadgen.workloads import (
        sample_stratified_truncated_lognormal,
        sample_truncated_lognormal,
    )

    mu, sigma, low, high, b = 9.9, 1.0, 128.0, 131072.0, 50
    draw = sample_stratified_truncated_lognormal(600, mu, sigma, low, high,
                                                 np.random.default_rng(3), b)  # fmt: skip
    again = sample_stratified_truncated_lognormal(600, mu, sigma, low, high,
                                                  np.random.default_rng(3), b)  # fmt: skip
    assert np.array_equal(draw, again) and draw.min() >= low and draw.max() <= high
    normal = NormalDist()
    lo = normal.cdf((np.log(low) - mu) / sigma)
    hi = normal.cdf((np.log(high) - mu) / sigma)
    for start in range(0, 600, b):
        q = [
            (normal.cdf((np.log(x) - mu) / sigma) - lo) / (hi - lo) for x in draw[start : start + b]
        ]
        assert sorted(int(v * b) for v in q) == list(range(b))  # one per stratum
    cost = draw**1.5  # a convex per-request cost
    thirds = [cost[i * 200 : (i + 1) * 200].mean() for i in range(3)]
    assert max(thirds) / min(thirds) < 1.1
    iid = sample_truncated_lognormal(600, mu, sigma, low, high, np.random.default_rng(3)) ** 1.5
    iid_thirds = [iid[i * 200 : (i + 1) * 200].mean() for i in range(3)]
    assert max(iid_thirds) / min(iid_thirds) > max(thirds) / min(thirds)


def test_lognormal_workload_is_iid_unless_stratified() -> None:
    plain = lognormal_workload(40, seed=5)
    assert "stratify_block" not in plain.params
    strat = lognormal_workload(40, seed=5, stratify_block=20)
    assert strat.params["stratify_block"] == 20
    assert [r.input_tokens for r in plain.requests] != [r.input_tokens for r in strat.requests]
