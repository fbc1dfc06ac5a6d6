"""`prfaas experiment --phases` outputs (experiment/phased.py, phased_report.py) from recorded data:
router.log parsing, the throughput series, per-phase figures, the table and the plot."""

from __future__ import annotations

from pathlib import Path

from prfaas.tools.experiment.phased import per_phase, planner_decisions, role_changes
from prfaas.tools.experiment.phased_report import markdown, plot, throughput_series
from prfaas.tools.loadgen.client import RequestRecord
from prfaas.tools.loadgen.phases import Phase
from prfaas.tools.loadgen.results import Results

ROUTER_LOG = """\
2026-12-02 06:47:54,698 INFO prfaas.router.control_loops: long-term: hold:insufficient_data t=nan N_p=1 N_d=2 rate=0.07/s actions=[]
2026-12-02 06:50:55,195 INFO prfaas.router.control_loops: long-term: rebalance:prefill_bound t=129024 N_p=2 N_d=1 rate=0.84/s actions=[('pd-0', 'prefill')]
2026-12-02 06:50:55,196 INFO prfaas.router.control_loops: long-term: measured/profiled prefill time {'pd': 0.1}
"""  # noqa: E501


def _record(start: float, e2e: float | None, ok: bool = True) -> RequestRecord:
    rec = RequestRecord(0, start, start_s=start, ttft_s=0.5 if ok else None, e2e_s=e2e)
    rec.error = None if ok else "HTTP 429: full"
    return rec


def test_router_log_decisions_and_role_changes(tmp_path: Path) -> None:
    (tmp_path / "router.log").write_text(ROUTER_LOG)
    (tmp_path / "pd-0.log").write_text("2026-12-02 06:50:55,198 INFO x: role decode -> prefill\n")
    hold, move = planner_decisions(tmp_path / "router.log")
    assert (hold["reason"], hold["n_p"], hold["n_d"]) == ("hold:insufficient_data", 1, 2)
    assert (move["reason"], move["threshold"], move["n_p"], move["n_d"], move["rate_rps"]) == (
        "rebalance:prefill_bound", 129024.0, 2, 1, 0.84
    )  # fmt: skip
    assert move["actions"] == "[('pd-0', 'prefill')]"
    assert role_changes(tmp_path) == [
        "pd-0: 2026-12-02 06:50:55,198 INFO x: role decode -> prefill"
    ]


def test_per_phase_and_throughput_and_outputs(tmp_path: Path) -> None:
    phases = [Phase(10, 1.0, 0.1), Phase(10, 0.5, 0.9)]
    records = [_record(1, 2), _record(3, 4), _record(12, 1), _record(15, None, ok=False)]
    phase_of = [0, 0, 1, 1]
    rows = per_phase(Results({}, records), phase_of, phases)
    assert [(r["requests"], r["failed"]) for r in rows] == [(2, 0), (2, 1)]
    # completions inside each window: ends at 3 and 7 in phase 0, 13 in phase 1
    assert [r["completions_per_s_in_window"] for r in rows] == [0.2, 0.1]
    recs = [{"start_s": r.start_s, "e2e_s": r.e2e_s, "ok": r.ok} for r in records]
    assert throughput_series(recs, bucket_s=5) == [(0.0, 0.2), (5.0, 0.2), (10.0, 0.2)]
    doc = {
        "requests": 4, "failed": 1, "errors": {"429": 1}, "throughput_rps": 0.2,
        "load_average": {"start": [1.0], "end": [2.0]}, "per_phase": rows,
        "samples": [{"t_s": 0.0, "n_p": 1, "n_d": 2, "threshold": 512.0}],
        "records": recs, "decisions": [], "role_changes": [],
    }  # fmt: skip
    table = markdown(doc)
    assert "| 1 | long-heavy (90% long) | 10-20 | 0.50 | 2 | 1 |" in table
    assert plot(doc, tmp_path / "phased.png").stat().st_size > 0
