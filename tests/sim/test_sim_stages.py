"""The simulator's request stages, named as the router's stage histogram, so `sim.compare
--stages` can say where a TTFT difference comes from."""

from __future__ import annotations

import pytest

from prfaas.tools.sim.analysis import stages, to_results
from tests.sim.helpers import small_sim


def test_stages_are_the_served_requests_own_spans_and_add_up() -> None:
    sim, reqs = small_sim(n=60, rate=2.0)
    result = sim.run(reqs)
    table = to_results(result).stages
    assert list(table) == ["prefill_queue", "prefill_compute", "first_token", "ttft", "decode",
                           "total"]  # fmt: skip
    served = [r for r in result.requests if r.error is None and r.finish_s is not None]
    assert table["total"]["count"] == len(served) > 0
    mean = {k: v["mean_s"] for k, v in table.items()}
    # Queue and compute come before the first token; decode follows it.
    assert mean["prefill_queue"] + mean["prefill_compute"] <= mean["first_token"] + 1e-9
    assert mean["first_token"] + mean["decode"] == pytest.approx(mean["total"])
    assert all(v["p90_s"] >= 0 for v in table.values())
    first = sorted(r.first_token_s - r.arrival_s for r in served)
    assert table["ttft"]["mean_s"] == pytest.approx(sum(first) / len(first))


def test_a_request_that_was_refused_has_no_stage() -> None:
    sim, reqs = small_sim(n=3, rate=1.0)
    result = sim.run(reqs)
    refused = result.requests[0]
    refused.error, refused.finish_s = "429", None
    assert stages(result.requests)["total"]["count"] == len(result.requests) - 1
