from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prfaas.tools.loadgen.client import RequestRecord
from prfaas.tools.loadgen.results import Results, summarize
from prfaas.tools.loadgen.run_report import format_table
from prfaas.tools.loadgen.scrape import EgressSample, diff_counts, routing_counts, sample_values


def _ok(i: int, start: float, ttft: float, e2e: float, itl: list[float]) -> RequestRecord:
    return RequestRecord(
        i,
        scheduled_s=start - 0.01 * i,
        start_s=start,
        ttft_s=ttft,
        e2e_s=e2e,
        itl_s=itl,
        input_tokens=100,
        output_tokens=10,
        prompt_tokens=100,
        completion_tokens=10,
        cached_tokens=25 * i,
        status=200,
    )


def known_records() -> list[RequestRecord]:
    return [
        _ok(0, 0.0, 0.1, 1.0, [0.01, 0.02]),
        _ok(1, 1.0, 0.2, 2.0, [0.03]),
        _ok(2, 2.0, 0.3, 2.0, [0.04, 0.05]),
        RequestRecord(3, 2.5, start_s=2.5, status=429, error="HTTP 429: busy"),
        RequestRecord(4, 3.0, start_s=3.0, e2e_s=0.5, status=0, error="timeout after 1 s"),
    ]


def test_summary_from_known_records() -> None:
    s = summarize(known_records())
    assert (s.requests, s.succeeded, s.failed) == (5, 3, 2)
    assert s.errors == {"0": 1, "429": 1}
    assert s.duration_s == pytest.approx(4.0)  # first send 0.0, last end 2.0 + 2.0
    assert s.throughput_rps == pytest.approx(3 / 4)
    assert s.output_tokens_per_s == pytest.approx(30 / 4)
    assert s.total_tokens_per_s == pytest.approx(330 / 4)
    assert s.ttft_mean_s == pytest.approx(0.2)
    assert s.ttft_p50_s == pytest.approx(0.2)
    assert s.ttft_p90_s == pytest.approx(0.28)
    assert s.itl_p50_s == pytest.approx(0.03)
    assert s.e2e_p50_s == pytest.approx(2.0)
    assert s.cached_fraction == pytest.approx(75 / 300)
    assert s.max_send_lag_s == pytest.approx(0.02)
    assert s.egress_bytes is None


def test_ttft_p90_over_all_sent_counts_unanswered_requests_as_infinitely_late() -> None:
    # 2 of 5 sends got no first token: the P90 (rank 5 of 5) falls on one of them.
    assert summarize(known_records()).ttft_p90_all_sent_s is None
    # 20 served (TTFT 0.1 .. 2.0 s) and 1 refused: rank ceil(0.9 * 21) = 19 -> the 19th TTFT.
    served = [_ok(i, float(i), 0.1 * (i + 1), 3.0, []) for i in range(20)]
    refused = RequestRecord(20, 20.0, start_s=20.0, status=429, error="HTTP 429: busy")
    s = summarize([*served, refused])
    assert s.ttft_p90_all_sent_s == pytest.approx(1.9)
    assert s.ttft_p90_s == pytest.approx(np.percentile([0.1 * (i + 1) for i in range(20)], 90))
    assert summarize([]).ttft_p90_all_sent_s is None


def test_egress_total_and_peak() -> None:
    egress = [EgressSample(0.0, 100.0), EgressSample(1.0, 600.0), EgressSample(3.0, 1600.0)]
    s = summarize(known_records(), egress)
    assert s.egress_bytes == pytest.approx(1500.0)
    assert s.egress_peak_bytes_per_s == pytest.approx(500.0)


def test_results_json_round_trip_and_table(tmp_path: Path) -> None:
    results = Results({"url": "x"}, known_records(), [EgressSample(0.0, 0.0)], {"p/local/short": 2})
    loaded = Results.load(results.save(tmp_path / "r.json"))
    assert loaded.records == results.records and loaded.routing == results.routing
    assert loaded.summary == results.summary
    table = format_table({"a": results.summary, "b": results.summary}).splitlines()
    assert len(table) == 4 and table[2].startswith("| a | 3/5 | 0.750 |")
    assert "0:1, 429:1" in table[2]


EXPOSITION = """\
# HELP prfaas_kv_transfer_sent_bytes_total KV cache bytes sent.
# TYPE prfaas_kv_transfer_sent_bytes_total counter
prfaas_kv_transfer_sent_bytes_total{link="a"} 1000.0
prfaas_kv_transfer_sent_bytes_total{link="b"} 24.0
# HELP prfaas_routing_decisions_total Routing decisions.
# TYPE prfaas_routing_decisions_total counter
prfaas_routing_decisions_total{policy="prfaas",reason="long",route="offload"} 3.0
prfaas_routing_decisions_total{policy="prfaas",reason="short",route="local"} 5.0
"""


def test_prometheus_parsing() -> None:
    sent = sample_values(EXPOSITION, "prfaas_kv_transfer_sent_bytes_total")
    assert sorted(v for _, v in sent) == [24.0, 1000.0]
    counts = routing_counts(EXPOSITION)
    assert counts == {"prfaas/offload/long": 3.0, "prfaas/local/short": 5.0}
    assert diff_counts(counts, {"prfaas/local/short": 5.0}) == {"prfaas/offload/long": 3.0}


def test_progress_lines_when_not_a_terminal() -> None:
    import io

    from prfaas.tools.loadgen.progress import Progress

    out = io.StringIO()
    bar = Progress(20, "x ", stream=out)
    for _ in range(20):
        bar.update(sent=1)
        bar.update(done=1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("x [" + "#" * 30 + "] 20/20 done")
    silent = io.StringIO()
    Progress(5, stream=silent, enabled=False).update(done=5)
    assert silent.getvalue() == ""
