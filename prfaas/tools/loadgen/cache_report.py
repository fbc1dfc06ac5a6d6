"""Prefix-cache reuse of a run against the oracle (cache_oracle.py), per cluster and in all.

Served: each successful request's `prompt_tokens_details.cached_tokens`, attributed to the cluster
that prefilled it (`prefill_cluster`, a prfaas usage extension). Oracle: what an unbounded cache of
the deployment's block size could have served the same request, given every request *sent* before
it (a failed request's prompt still counts as seen: the bound is the trace's, not the run's).
Cross-cluster prefix moves (the router's `prfaas_prefix_transfer*` counters over the run) are
reported beside it: how many, by outcome, and their tokens, bytes and router-side seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prfaas.tools.loadgen.cache_oracle import oracle_cached_tokens
from prfaas.tools.loadgen.client import RequestRecord
from prfaas.tools.loadgen.workloads import Workload

ALL = "all"


@dataclass(frozen=True)
class CacheTally:
    requests: int
    prompt_tokens: int
    served_tokens: int
    """Prompt tokens the deployment served from a prefix cache."""
    oracle_tokens: int
    """Prompt tokens an unbounded prefix cache could have served the same requests."""

    @property
    def of_oracle(self) -> float | None:
        """served / oracle (None when the oracle is 0: nothing was reusable)."""
        return self.served_tokens / self.oracle_tokens if self.oracle_tokens else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "of_oracle": self.of_oracle}


def cache_report(
    workload: Workload, records: list[RequestRecord], block_size: int, special_tokens: int = 1
) -> dict[str, CacheTally]:
    """Tallies keyed by prefill cluster ("?" when the server did not say) plus `ALL`.
    `records` are the run's, one per workload request in the same order."""
    trace_block = workload.params.get("scaled_block_tokens")
    if not isinstance(trace_block, int):
        raise ValueError(f"workload '{workload.name}' has no prefix hash ids (need mooncake)")
    order = sorted(range(len(records)), key=lambda i: (records[i].start_s, i))
    sent = [workload.requests[i] for i in order]
    oracle = oracle_cached_tokens(
        sent, block_size=block_size, trace_block_tokens=trace_block, special_tokens=special_tokens
    )
    sums: dict[str, list[int]] = {}
    for i, bound in zip(order, oracle, strict=True):
        rec = records[i]
        if not rec.ok:
            continue
        for key in (rec.prefill_cluster or "?", ALL):
            s = sums.setdefault(key, [0, 0, 0, 0])
            s[0] += 1
            s[1] += rec.prompt_tokens
            s[2] += rec.cached_tokens
            s[3] += bound
    sums.setdefault(ALL, [0, 0, 0, 0])
    return {
        k: CacheTally(*v) for k, v in sorted(sums.items(), key=lambda kv: (kv[0] == ALL, kv[0]))
    }


def format_cache_table(tallies: dict[str, CacheTally], moves: dict[str, float]) -> str:
    """Markdown: one row per cluster and `all`, then the prefix moves in one line."""
    lines = [
        "| cluster | requests | prompt tokens | served from cache | oracle | served/oracle |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in tallies.items():
        ratio = "-" if t.of_oracle is None else f"{t.of_oracle:.3f}"
        lines.append(f"| {name} | {t.requests} | {t.prompt_tokens} | {t.served_tokens} | "
                     f"{t.oracle_tokens} | {ratio} |")  # fmt: skip
    lines.append("")
    lines.append("cross-cluster prefix moves: " + format_moves(moves))
    return "\n".join(lines)


def format_moves(moves: dict[str, float]) -> str:
    outcomes = {k.removeprefix("moves/"): v for k, v in moves.items() if k.startswith("moves/")}
    if not outcomes:
        return "none"
    counts = ", ".join(f"{int(v)} {k}" for k, v in sorted(outcomes.items()))
    return (f"{counts}; {moves.get('tokens', 0):.0f} tokens, {moves.get('bytes', 0) / 1e6:.2f} MB, "
            f"{moves.get('seconds', 0):.2f} s in all")  # fmt: skip
