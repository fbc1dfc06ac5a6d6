"""The demo's report pieces on known inputs: metric snapshots to the request's path, the two lines
under the table, and the titled plot (the live run is `make demo`; its time is in BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

from prfaas.tools.demo import probe
from prfaas.tools.demo.one_request import OneRequest
from prfaas.tools.demo.plot import policy_bars, policy_figure
from prfaas.tools.demo.policies import PolicyRun
from prfaas.tools.loadgen.client import RequestRecord
from prfaas.tools.loadgen.compare import Comparison
from prfaas.tools.loadgen.results import Results

ROUTER_TEXT = """# TYPE prfaas_routing_decisions_total counter
prfaas_routing_decisions_total{policy="prfaas",route="offload",reason="offloaded"} 3.0
"""
WORKER_TEXT = """# TYPE prfaas_prefill_computed_tokens_total counter
prfaas_prefill_computed_tokens_total{cluster="prfaas",worker="prfaas-0"} 2048.0
# TYPE prfaas_kv_transfer_sent_bytes_total counter
prfaas_kv_transfer_sent_bytes_total{link="pd-1"} 1500000.0
"""


def test_changes_keep_only_what_moved_per_process() -> None:
    before = {"router": probe._totals(ROUTER_TEXT.replace("3.0", "2.0")), "pd-0": {}}
    after = {
        "router": probe._totals(ROUTER_TEXT),
        "pd-0": {},
        "prfaas-0": probe._totals(WORKER_TEXT),
    }
    moved = probe.changes(before, after)
    assert moved["router"] == {"routing:offload/offloaded": 1.0}
    assert "pd-0" not in moved
    assert moved["prfaas-0"][probe.PREFILL_TOKENS] == 2048.0
    assert moved["prfaas-0"][probe.KV_SENT] == 1_500_000.0


def test_one_request_lines_name_route_workers_and_timing() -> None:
    record = RequestRecord(0, 0.0, ttft_s=0.25, e2e_s=0.5, itl_s=[0.02, 0.03], prompt_tokens=2048,
                           completion_tokens=16, status=200)  # fmt: skip
    moved = {
        "router": {"routing:offload/offloaded": 1.0},
        "prfaas-0": {probe.PREFILL_TOKENS: 2047.0, probe.KV_SENT: 2e6, probe.KV_SEND_SECONDS: 0.1},
        "pd-1": {probe.DECODE_TOKENS: 16.0, probe.KV_RECEIVED: 2e6},
    }
    text = "\n".join(OneRequest(record, 512, moved).lines())
    assert "2048-token prompt > t = 512 -> offload/offloaded" in text
    assert "prefill: prfaas-0 computed 2047 tokens" in text
    assert "KV: prfaas-0 sent 2.00 MB, streamed layer by layer over 100 ms" in text
    assert "decode: pd-1 generated 16 tokens" in text
    assert "first token after 250 ms" in text


def _results(
    policy: str, ttfts: list[float], spacing_s: float, route: str, refused: int = 0
) -> Results:
    """`ttfts` served requests, then `refused` ones answered 429 (no first token)."""
    records = [
        RequestRecord(
            i,
            i * spacing_s,
            start_s=i * spacing_s,
            ttft_s=t,
            e2e_s=t + 0.1,
            prompt_tokens=100,
            completion_tokens=4,
            status=200,
        )  # fmt: skip
        for i, t in enumerate(ttfts)
    ]
    records += [
        RequestRecord(len(ttfts) + i, 0.0, start_s=0.0, status=429, error="HTTP 429: busy")
        for i in range(refused)
    ]
    return Results({"policy": policy}, records, [], {route: float(len(ttfts))})


def _run() -> PolicyRun:
    runs = {
        "prfaas": _results("prfaas", [0.5] * 10, 0.25, "prfaas/offload/offloaded"),
        "homogeneous-pd": _results(
            "homogeneous-pd",
            [float(i) for i in range(10)],
            0.5,
            "homogeneous-pd/local/policy_local",
        ),  # fmt: skip
        "naive-hetero": _results("naive-hetero", [0.8] * 10, 0.25, "naive-hetero/offload/x", 2),
    }
    prediction = {"policies": {
        "prfaas": {"lambda_max_rps": 8.9, "threshold_tokens": 22784.0},
        "homogeneous-pd": {"lambda_max_rps": 2.3, "threshold_tokens": None},
        "naive-hetero": {"lambda_max_rps": 6.3, "threshold_tokens": None},
    }}  # fmt: skip
    return PolicyRun(Comparison(runs, {}), prediction, 4.0)


def test_explanation_states_threshold_and_measured_numbers() -> None:
    first, second = _run().explanation()
    assert first.startswith(
        "At 4.0 req/s (1.74x homogeneous-pd's planned capacity, 0.63x naive-hetero's, 0.45x "
        "prfaas's)"
    )
    assert "H20s (0.74 req/s, TTFT P90 over all sent 8.00 s)" in first
    # 2 of 12 refused (17 % > 10 %): its P90 over all sent falls on a request with no first token.
    assert "served 10/12, TTFT P90 over all sent ∞ (17% failed)" in first
    assert "t = 22784 tokens (100% of requests;" in second
    assert second.endswith("(3.51 req/s, served 10/10, TTFT P90 over all sent 0.50 s).")


def test_capacity_table_puts_the_planner_beside_the_measurement() -> None:
    rows = _run().capacity_table().splitlines()
    assert rows[0].startswith("| policy | planned Λ (req/s) | offered | measured (req/s) |")
    assert rows[2] == "| prfaas | 8.90 | 4.00 | 3.51 | 10/10 | 0.50 s | 0.50 s |"
    # nearest rank: the 9th of 10 served TTFTs 0..9 s
    assert rows[3] == "| homogeneous-pd | 2.30 | 4.00 | 0.74 | 10/10 | 8.00 s | 8.10 s |"
    assert rows[4].endswith("| 10/12 | ∞ (17% failed) | 0.80 s |")


def test_policy_plot_is_titled_and_labelled(tmp_path: Path) -> None:
    run = _run()
    summaries = {n: r.summary for n, r in run.comparison.runs.items()}
    planned = {n: run.capacity(n) for n in summaries}
    fig = policy_figure(summaries, run.rate_rps, planned, 0.15)
    assert fig._suptitle is not None and "4.0 req/s offered" in fig._suptitle.get_text()
    assert "0.15 Gbit/s link" in fig._suptitle.get_text()
    left, right = fig.axes
    assert left.get_ylabel() == "completed requests / s" and right.get_ylabel() == "seconds"
    assert [t.get_text() for t in left.get_xticklabels()] == list(summaries)
    heights = [bar.get_height() for bar in right.patches]
    # naive-hetero refused 17 %: a hatched bar above the finite ones, labelled ∞
    assert heights[:2] == [summaries[n].ttft_p90_all_sent_s for n in ["prfaas", "homogeneous-pd"]]
    assert heights[2] > max(heights[:2]) and right.patches[2].get_hatch() == "//"
    assert any(t.get_text().startswith("∞") for t in right.texts)
    (ticks,) = left.collections  # the planner's Λ_max, one tick per policy
    assert [y for _, y in ticks.get_offsets()] == [8.9, 2.3, 6.3]
    assert policy_bars(summaries, run.rate_rps, tmp_path / "p.png").stat().st_size > 10_000
