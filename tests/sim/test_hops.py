"""Per-request hop latencies (hops.py): read from a recorded point's stage table and client TTFTs,
added to the simulated admissions, first tokens and the client's timings."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import pytest

from prfaas.tools.sim.analysis import to_results
from prfaas.tools.sim.cli import add_arguments, with_recorded
from prfaas.tools.sim.hops import decode_step_from_point, hops_from_point
from prfaas.tools.sim.simulation import Simulation
from tests.sim.helpers import small_sim


def _stage(mean: float) -> dict[str, float]:
    return {"count": 10.0, "mean_s": mean, "p90_s": 2 * mean}


def test_hops_are_the_stage_means_beyond_half_a_step_and_the_client_gap() -> None:
    point: dict[str, Any] = {
        "stages": {"decode_admit": _stage(0.5), "prefill_queue": _stage(0.3),
                   "prefill_compute": _stage(2.0), "kv_transfer_exposed": _stage(0.05),
                   "first_token": _stage(3.3), "ttft": _stage(3.31)},
        "requests": [{"ttft_s": 3.4}, {"ttft_s": 3.6}, {"ttft_s": None, "error": "timeout"}],
    }  # fmt: skip
    h = hops_from_point(point, step_s=0.8)
    assert h.admit_s == pytest.approx(0.5 - 0.4)
    # The admission (0.5 s) overlaps the queue and compute (2.3 s): the KV completes after 2.3 s.
    assert h.first_token_s == pytest.approx(3.3 - 2.3 - 0.05 - 0.4)
    assert h.client_s == pytest.approx(3.5 - 3.31)
    del point["stages"]["decode_admit"]
    with pytest.raises(ValueError, match="decode_admit"):
        hops_from_point(point, step_s=0.8)


def test_on_an_idle_deployment_each_hop_adds_to_the_clients_ttft_once_or_overlaps() -> None:
    """The first token's and the client's hops add to the TTFT; the admission's overlaps the
    prefill (which starts with it, and takes longer here), so it adds nothing."""
    sim, reqs = small_sim(n=1, rate=1.0)
    base = to_results(sim.run(reqs)).records[0]
    cfg = sim.cfg
    hopped = replace(cfg, decode=replace(cfg.decode, admit_hop_s=0.07, first_token_hop_s=0.05),
                     client_hop_s=0.2)  # fmt: skip
    _, reqs2 = small_sim(n=1, rate=1.0)
    rec = to_results(Simulation(hopped, 0).run(reqs2)).records[0]
    assert base.ttft_s is not None and rec.ttft_s is not None
    assert base.e2e_s is not None and rec.e2e_s is not None
    assert rec.ttft_s == pytest.approx(base.ttft_s + 0.05 + 0.2)
    assert rec.e2e_s == pytest.approx(base.e2e_s + 0.2)


def test_the_recorded_decode_step_is_the_mean_time_per_token_after_the_first() -> None:
    point = {"requests": [
        {"ttft_s": 2.0, "e2e_s": 2.0 + 31 * 0.9, "output_tokens": 32},
        {"ttft_s": 5.0, "e2e_s": 5.0 + 3 * 1.1, "output_tokens": 4},
        {"ttft_s": 1.0, "e2e_s": 1.0, "output_tokens": 1},  # one token: no step to read
        {"ttft_s": None, "e2e_s": None, "output_tokens": 0, "error": "429"},
    ]}  # fmt: skip
    assert decode_step_from_point(point) == pytest.approx((0.9 + 1.1) / 2)
    with pytest.raises(ValueError, match="two output tokens"):
        decode_step_from_point({"requests": point["requests"][2:]})


def test_decode_step_from_slows_the_engines_only(tmp_path) -> None:  # noqa: ANN001
    import json

    recorded = tmp_path / "point.json"
    recorded.write_text(json.dumps({"requests": [
        {"ttft_s": 1.0, "e2e_s": 1.0 + 9 * 1.0, "output_tokens": 10}]}))  # fmt: skip
    sim, _ = small_sim(n=1, rate=1.0)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--decode-step-from", str(recorded)])
    cfg = with_recorded(sim.cfg, args)
    assert cfg.decode.step_s == pytest.approx(1.0) != sim.cfg.decode.step_s
    assert cfg.policy == sim.cfg.policy and cfg.decode.admit_hop_s == sim.cfg.decode.admit_hop_s
