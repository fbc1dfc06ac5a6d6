"""The simulator-vs-deployment comparison pairs rate points by offered rate and judges each
figure against issue 18's goals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.tools.sim.compare import compare, main


def point(rate: float, thr: float, ttft: float, p90: float, offload: float) -> dict:
    return {"offered_rps": rate, "throughput_rps": thr, "ttft_mean_s": ttft, "ttft_p90_s": p90,
            "offload_fraction": offload}  # fmt: skip


MEASURED = {"points": {
    "prfaas": [point(1.0, 1.0, 4.0, 6.0, 0.50), point(2.0, 2.0, 5.0, 8.0, 0.50)],
    "naive-hetero": [point(1.5, 1.4, 3.0, 5.0, 1.0)],
}}  # fmt: skip
SIMULATED = {"points": {
    "prfaas": [point(1.005, 1.05, 3.0, 6.6, 0.47), point(2.5, 2.0, 5.0, 8.0, 0.5)],
    "naive-hetero": [point(1.5, 1.2, 3.0, 5.0, 1.0)],
}}  # fmt: skip


def test_points_pair_by_rate_and_each_error_is_judged() -> None:
    rows = compare(MEASURED, SIMULATED)
    assert [(r.policy, r.offered_rps) for r in rows] == [("prfaas", 1.0), ("naive-hetero", 1.5)]
    prfaas, naive = rows
    assert prfaas.errors["throughput_rps"] == pytest.approx(0.05)
    assert prfaas.errors["ttft_mean_s"] == pytest.approx(-0.25)
    assert prfaas.errors["ttft_p90_s"] == pytest.approx(0.10)
    assert prfaas.errors["offload_fraction"] == pytest.approx(-0.03)
    assert prfaas.within == {"throughput_rps": True, "ttft_mean_s": False, "ttft_p90_s": True,
                             "offload_fraction": True}  # fmt: skip
    assert naive.within["throughput_rps"] is False  # 1.2 of 1.4: -14 %


def test_the_command_prints_the_table_and_refuses_documents_with_no_common_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m, s, other = tmp_path / "m.json", tmp_path / "s.json", tmp_path / "o.json"
    m.write_text(json.dumps(MEASURED))
    s.write_text(json.dumps(SIMULATED))
    other.write_text(json.dumps({"points": {"prfaas": [point(9.0, 1, 1, 1, 0)]}}))
    assert main([str(m), str(s), "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "| prfaas @ 1.00 | 1.00 → 1.05 | +5.0 % |" in out and "**-25.0 %**" in out
    assert len(json.loads((tmp_path / "rows.json").read_text())) == 2
    assert main([str(m), str(other)]) == 2


def test_fluctuation_runs_alone_are_compared_by_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(before: float, recovered: float) -> dict:
        phases = {k: {"ttft_mean_s": v} for k, v in
                  (("before", before), ("during", 9.0), ("after", 4.0), ("recovered", recovered))}  # fmt: skip
        return {"fluctuation": {"phases": {**phases, "recovery_ratio": recovered / before}}}

    m, s = tmp_path / "m.json", tmp_path / "s.json"
    m.write_text(json.dumps(run(3.0, 3.6)))
    s.write_text(json.dumps(run(3.0, 3.3)))
    assert main([str(m), str(s)]) == 0
    out = capsys.readouterr().out
    assert (
        "| recovered | 3.60 s | 3.30 s | -8.3 % |" in out
        and "| recovery ratio | 1.20 | 1.10 | |" in out
    )


def test_stage_rows_pair_the_stages_both_sides_record() -> None:
    from prfaas.tools.sim.compare import stage_rows

    def stage(mean: float) -> dict:
        return {"count": 10.0, "mean_s": mean, "p90_s": 2 * mean}

    measured = {
        "points": {
            "prfaas": [
                {
                    **point(1.0, 1.0, 4.0, 6.0, 0.5),
                    "stages": {
                        "decode_admit": stage(0.5),
                        "prefill_queue": stage(1.0),
                        "ttft": stage(4.0),
                    },
                }
            ]
        }
    }
    simulated = {"points": {"prfaas": [{**point(1.0, 1.0, 3.0, 6.0, 0.5), "stages": {
        "prefill_queue": stage(0.25), "ttft": stage(3.0)}}]}}  # fmt: skip
    rows = stage_rows(measured, simulated)
    assert "| prefill_queue | 1.00 / 2.00 s | 0.25 / 0.50 s |" in rows
    assert "| ttft | 4.00 / 8.00 s | 3.00 / 6.00 s |" in rows
    assert not any("decode_admit" in r for r in rows)  # the simulator has none
    assert stage_rows(measured, {"points": {}}) == []
