"""Results of one run: the config, every request's record, KV egress samples, and the summary."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prfaas.tools.loadgen.client import RequestRecord
from prfaas.tools.loadgen.scrape import EgressSample


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _pct_all_sent(answered: list[float], unanswered: int, q: float) -> float | None:
    """The q-th percentile of TTFT over every request sent, a request that never got a first
    token (refused, failed, timed out) counting as an infinitely late one; None when the
    percentile falls on those (more than 100 - q % of the sends got no first token) or nothing
    was sent. Nearest rank, so a finite answer is some request's real TTFT."""
    n = len(answered) + unanswered
    if n == 0:
        return None
    rank = max(1, math.ceil(q / 100 * n))  # 1-based rank of the percentile among n sends
    ordered = sorted(answered)
    return ordered[rank - 1] if rank <= len(ordered) else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass(frozen=True)
class Summary:
    requests: int
    succeeded: int
    failed: int
    errors: dict[str, int]
    """Failures by HTTP status ('0' for no response: connection error or timeout)."""
    duration_s: float
    """From the first send to the last completion."""
    throughput_rps: float
    """Successful requests per second over `duration_s`."""
    output_tokens_per_s: float
    total_tokens_per_s: float
    ttft_mean_s: float | None
    ttft_p50_s: float | None
    ttft_p90_s: float | None
    ttft_p99_s: float | None
    ttft_p90_all_sent_s: float | None
    """TTFT P90 over every request sent, one without a first token counting as infinitely late
    (`_pct_all_sent`); None when over 10 % got none. `ttft_p90_s` counts served requests only, so
    a policy that refuses its slowest requests would look fast there."""
    itl_p50_s: float | None
    itl_p99_s: float | None
    e2e_p50_s: float | None
    e2e_p90_s: float | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cached_fraction: float
    """Cached prompt tokens over prompt tokens of successful requests."""
    max_send_lag_s: float
    """Largest delay of a send behind its schedule (open-loop adherence; the concurrency cap)."""
    egress_bytes: float | None = None
    egress_peak_bytes_per_s: float | None = None


def summarize(records: list[RequestRecord], egress: list[EgressSample] | None = None) -> Summary:
    ok = [r for r in records if r.ok]
    errors = Counter(str(r.status) for r in records if not r.ok)
    starts = [r.start_s for r in records]
    ends = [r.start_s + r.e2e_s for r in records if r.e2e_s is not None] or starts
    duration = max(ends) - min(starts) if records else 0.0
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    prompt = sum(r.prompt_tokens for r in ok)
    completion = sum(r.completion_tokens for r in ok)
    cached = sum(r.cached_tokens for r in ok)
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    # A failed request's TTFT (if it streamed a token before failing) still counts as answered.
    answered = [r.ttft_s for r in records if r.ttft_s is not None]
    itl = [x for r in ok for x in r.itl_s]
    e2e = [r.e2e_s for r in ok if r.e2e_s is not None]
    egress_total, egress_peak = None, None
    if egress and len(egress) >= 2:
        egress_total = egress[-1].sent_bytes - egress[0].sent_bytes
        rates = [
            (b.sent_bytes - a.sent_bytes) / (b.t_s - a.t_s)
            for a, b in zip(egress, egress[1:], strict=False)
            if b.t_s > a.t_s
        ]
        egress_peak = max(rates, default=0.0)
    return Summary(
        requests=len(records),
        succeeded=len(ok),
        failed=len(records) - len(ok),
        errors=dict(sorted(errors.items())),
        duration_s=duration,
        throughput_rps=per_s(len(ok)),
        output_tokens_per_s=per_s(completion),
        total_tokens_per_s=per_s(prompt + completion),
        ttft_mean_s=_mean(ttft),
        ttft_p50_s=_pct(ttft, 50),
        ttft_p90_s=_pct(ttft, 90),
        ttft_p99_s=_pct(ttft, 99),
        ttft_p90_all_sent_s=_pct_all_sent(answered, len(records) - len(answered), 90),
        itl_p50_s=_pct(itl, 50),
        itl_p99_s=_pct(itl, 99),
        e2e_p50_s=_pct(e2e, 50),
        e2e_p90_s=_pct(e2e, 90),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cached_fraction=cached / prompt if prompt else 0.0,
        max_send_lag_s=max((r.start_s - r.scheduled_s for r in records), default=0.0),
        egress_bytes=egress_total,
        egress_peak_bytes_per_s=egress_peak,
    )


@dataclass
class Results:
    config: dict[str, Any]
    records: list[RequestRecord]
    egress: list[EgressSample] = field(default_factory=list)
    routing: dict[str, float] = field(default_factory=dict)
    """Routing decisions made during the run ('policy/route/reason' -> count), when known."""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per request stage during the run: count, mean_s, p90_s (loadgen/stage_stats.py)."""
    prefix_moves: dict[str, float] = field(default_factory=dict)
    """Cross-cluster prefix moves during the run (scrape.prefix_move_counts keys)."""
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Prefix-cache reuse against the oracle per cluster and 'all' (cache_report.py), when the
    workload has prefix hash ids."""

    @property
    def summary(self) -> Summary:
        return summarize(self.records, self.egress)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "summary": asdict(self.summary),
            "routing": self.routing,
            "stages": self.stages,
            "prefix_moves": self.prefix_moves,
            "cache": self.cache,
            "egress": [asdict(s) for s in self.egress],
            "requests": [r.to_json() for r in self.records],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        return cls(
            data["config"],
            [RequestRecord.from_json(r) for r in data["requests"]],
            [EgressSample(**s) for s in data.get("egress", [])],
            data.get("routing", {}),
            data.get("stages", {}),
            data.get("prefix_moves", {}),
            data.get("cache", {}),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Results:
        return cls.from_json(json.loads(Path(path).read_text()))
