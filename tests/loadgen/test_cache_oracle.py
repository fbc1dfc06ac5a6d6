"""The prefix-cache oracle (loadgen/cache_oracle.py) on hand-computed traces, against a brute force
over the real prompt texts, and the per-cluster report (loadgen/cache_report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.tools.loadgen.cache_oracle import oracle_cached_tokens
from prfaas.tools.loadgen.cache_report import ALL, cache_report, format_cache_table
from prfaas.tools.loadgen.client import RequestRecord
from prfaas.tools.loadgen.workloads import RequestSpec, Scaling, mooncake_workload


def spec(i: int, input_tokens: int, hash_ids: tuple[int, ...]) -> RequestSpec:
    return RequestSpec(i, "", input_tokens, 1, float(i), hash_ids)


def test_hand_computed_trace() -> None:
    # Trace blocks of 8 text tokens after one BOS; cache blocks of 4 server tokens.
    reqs = [
        spec(0, 1 + 20, (1, 2, 3)),  # first: nothing cached
        spec(1, 1 + 20, (1, 2, 9)),  # shares 2 trace blocks = 1 + 16 tokens -> 4 blocks = 16
        spec(2, 1 + 6, (1,)),  # shares 1 + min(8, 6) = 7, capped at len - 1 = 6 -> 1 block = 4
        spec(3, 1 + 20, (5, 6, 7)),  # nothing shared but the BOS -> 0
        spec(4, 1 + 30, (1, 2, 3, 4)),  # 1 + 20 with request 0, whose full blocks end at 20 -> 20
        spec(5, 1 + 20, (1, 2, 3)),  # same prompt as 0: len 21, at most len - 1 = 20 -> 20
    ]
    got = oracle_cached_tokens(reqs, block_size=4, trace_block_tokens=8)
    assert got == [0, 16, 4, 0, 20, 20]


def test_a_later_longer_request_extends_what_is_cached() -> None:
    # Request 0 is short (its full blocks cover 8 tokens); request 1 shares and extends it, so
    # request 2 can reuse up to where it shares with request 1, not just request 0's part.
    reqs = [spec(0, 9, (1, 2)), spec(1, 33, (1, 2, 3, 4)), spec(2, 33, (1, 2, 3, 8))]
    assert oracle_cached_tokens(reqs, block_size=4, trace_block_tokens=8) == [0, 8, 24]


def test_requests_without_hash_ids_share_nothing() -> None:
    reqs = [spec(0, 100, ()), spec(1, 100, ())]
    assert oracle_cached_tokens(reqs, block_size=1, trace_block_tokens=8) == [0, 1]  # the BOS
    assert oracle_cached_tokens(reqs, block_size=4, trace_block_tokens=8) == [0, 0]


def _brute_force(prompts: list[str], block_size: int) -> list[int]:
    """Unbounded cache of every full block of every earlier prompt, on the real token strings."""
    seen: list[str] = []
    out = []
    for text in prompts:
        tokens = "\x00" + text  # the server's BOS, then one token per byte
        best = 0
        for prev in seen:
            common = 0
            for a, b in zip(tokens, prev, strict=False):
                if a != b:
                    break
                common += 1
            best = max(best, min(common, len(prev) // block_size * block_size))
        cap = (len(tokens) - 1) // block_size * block_size
        out.append(min(best // block_size * block_size, cap))
        seen.append(tokens)
    return out


def _trace(tmp_path: Path) -> Path:
    rows = [
        (60, [0, 1, 2, 3]), (40, [0, 1, 5]), (70, [0, 1, 2, 3, 6]), (10, [0, 1]),
        (64, [0, 1, 2, 3]), (33, [7, 8]), (90, [0, 1, 2, 3, 6, 9]), (48, [7, 8, 10]),
    ]  # fmt: skip
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps({"timestamp": i * 100, "input_length": n,
                    "output_length": 2, "hash_ids": h}) for i, (n, h) in enumerate(rows)))  # fmt: skip
    return path


@pytest.mark.parametrize("block_size", [4, 8, 16])
def test_oracle_equals_brute_force_on_the_built_prompts(tmp_path: Path, block_size: int) -> None:
    # The workload builds prompts from hash-id blocks of 16 text tokens; the oracle, computed from
    # the hash ids alone, must agree with a brute force over the prompt texts themselves.
    wl = mooncake_workload(_trace(tmp_path), block_tokens=16, scaling=Scaling())
    want = _brute_force([r.prompt for r in wl.requests], block_size)
    got = oracle_cached_tokens(wl.requests, block_size=block_size, trace_block_tokens=16)
    assert got == want
    assert sum(got) > 0


def test_report_per_cluster_and_in_all(tmp_path: Path) -> None:
    wl = mooncake_workload(_trace(tmp_path), block_tokens=16)
    oracle = oracle_cached_tokens(wl.requests, block_size=8, trace_block_tokens=16)
    records = []
    for r, bound in zip(wl.requests, oracle, strict=True):
        rec = RequestRecord(r.index, float(r.index), start_s=float(r.index))
        rec.prompt_tokens = r.input_tokens
        rec.prefill_cluster = "pd" if r.index % 2 else "prfaas"
        rec.cached_tokens = bound // 2 if rec.prefill_cluster == "pd" else bound
        records.append(rec)
    records[-1].error = "HTTP 429: full"  # a failed request counts in no tally
    tallies = cache_report(wl, records, block_size=8)
    assert list(tallies) == ["pd", "prfaas", ALL]
    ok = [i for i in range(len(records)) if records[i].ok]
    assert tallies[ALL].requests == len(ok)
    assert tallies[ALL].oracle_tokens == sum(oracle[i] for i in ok)
    assert tallies["prfaas"].served_tokens == tallies["prfaas"].oracle_tokens
    pd = tallies["pd"]
    assert pd.served_tokens == sum(oracle[i] // 2 for i in ok if i % 2)
    assert pd.of_oracle == pytest.approx(pd.served_tokens / pd.oracle_tokens)
    moves = {"moves/imported": 2.0, "tokens": 512.0, "bytes": 2e6, "seconds": 0.5}
    table = format_cache_table(tallies, moves)
    assert "| all |" in table and "2 imported; 512 tokens, 2.00 MB, 0.50 s" in table


def test_report_needs_prefix_hash_ids() -> None:
    from prfaas.tools.loadgen.workloads import lognormal_workload

    wl = lognormal_workload(2, mu=3.0, min_tokens=16, max_tokens=32)
    with pytest.raises(ValueError, match="hash ids"):
        cache_report(wl, [RequestRecord(0, 0.0), RequestRecord(1, 0.0)], block_size=8)
