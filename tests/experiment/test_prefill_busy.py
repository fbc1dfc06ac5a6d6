"""The per-worker busy report read from request spans (`tools/experiment/prefill_busy.py`)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prfaas.tools.experiment.prefill_busy import (
    PrefillInterval,
    busy_time,
    idle_with_work,
    main,
    prefill_intervals,
    read_spans,
    summarize,
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(1_800_000_000 + t, UTC).isoformat().replace("+00:00", "Z")


def span(worker: str, queued: float, started: float | None, done: float, tokens: int) -> dict:
    events = [{"name": "prefill_queued", "timestamp": _iso(queued)}]
    if started is not None:
        events += [{"name": "prefill_started", "timestamp": _iso(started)},
                   {"name": "prefill_done", "timestamp": _iso(done)}]  # fmt: skip
    return {
        "name": "prefill",
        "attributes": {
            "prfaas.worker_id": worker,
            "prfaas.prompt_tokens": tokens,
            "prfaas.cached_tokens": 100,
        },  # fmt: skip
        "events": events,
    }


def iv(queued: float, started: float, done: float) -> PrefillInterval:
    return PrefillInterval(queued, started, done, 0)


def test_busy_is_the_union_of_overlapping_compute_intervals() -> None:
    # [0, 2] and [1, 3] share steps (one busy stretch of 3 s); [5, 6] after an idle gap.
    assert busy_time([iv(0, 1, 3), iv(0, 0, 2), iv(4, 5, 6)]) == pytest.approx(4.0)


def test_idle_with_work_counts_only_waits_while_nothing_computes() -> None:
    # b waits from 1 to 4 while a computes until 2: idle with work 2 -> 4; c arrives at an idle
    # worker and starts at once (no idle with work); d waits 0.5 s on an idle worker.
    intervals = [iv(0, 0, 2), iv(1, 4, 5), iv(6, 6, 7), iv(8, 8.5, 9)]
    assert idle_with_work(intervals) == pytest.approx(2.5)


def test_spans_to_rows_with_profile_work(tmp_path: Path) -> None:
    spans = [
        span("prfaas-0", 0.0, 0.0, 2.0, 1100),
        span("prfaas-0", 1.0, 2.0, 3.0, 600),
        span("prfaas-0", 1.0, None, 0.0, 600),  # failed before starting: left out
        span("pd-0", 0.0, 0.5, 1.5, 300),
        {"name": "request", "attributes": {}, "events": []},  # the router's span: not a prefill
    ]
    path = tmp_path / "spans.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(s) + "\n" for s in spans))
    by_worker = prefill_intervals(read_spans(path))
    assert sorted(by_worker) == ["pd-0", "prfaas-0"]
    assert [i.computed_tokens for i in by_worker["prfaas-0"]] == [1000, 500]
    rows = summarize(by_worker, lambda worker, tokens: tokens / 500)  # 1 s per 500 tokens
    pd, prfaas = rows
    assert prfaas.requests == 2 and prfaas.profile_work_s == pytest.approx(3.0)
    assert prfaas.busy_s == pytest.approx(3.0)
    assert prfaas.busy_over_profile == pytest.approx(1.0)
    assert prfaas.queue_mean_s == pytest.approx(0.5) and prfaas.idle_with_work_s == 0.0
    assert pd.idle_with_work_s == pytest.approx(0.5) and pd.busy_over_profile == pytest.approx(2.5)
    assert main([str(path)]) == 0


def test_no_prefill_spans_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"name": "request", "events": []}) + "\n")
    assert main([str(path)]) == 1
    assert "no finished prefill spans" in capsys.readouterr().out
