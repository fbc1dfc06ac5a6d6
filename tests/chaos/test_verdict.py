"""The chaos verdict on hand-made request records: causes, attribution to faults, silent losses,
hung requests, leaks, and throughput recovery."""

from __future__ import annotations

from prfaas.tools.chaos.schedule import Fault, Schedule, WorkloadSpec
from prfaas.tools.chaos.verdict import cause_of, judge
from prfaas.tools.loadgen.client import RequestRecord

SCHEDULE = Schedule(
    seed=0,
    duration_s=120.0,
    workload=WorkloadSpec(rate_rps=2.0, timeout_s=60.0, output_tokens=8),
    faults=(Fault("kill", "prfaas-0", 30.0, 10.0), Fault("restart", "router", 80.0, 2.0)),
    recovery_s=30.0,
)
CLEAN = {"prfaas-0": {"leak_report": "", "num_live_requests": 0}}


def record(index: int, start: float, e2e: float = 0.5, **fields: object) -> RequestRecord:
    r = RequestRecord(index, start, start_s=start, e2e_s=e2e, ttft_s=0.1, status=200)
    r.output_tokens = r.completion_tokens = 8
    for key, value in fields.items():
        setattr(r, key, value)
    return r


def steady(rate: float = 2.0, until: float = 120.0, skip: tuple[float, float] = (0, 0)) -> list:
    """Successful requests every 1/rate s, none sent in [skip)."""
    n = int(until * rate)
    return [record(i, i / rate) for i in range(n) if not skip[0] <= i / rate < skip[1]]


def test_causes() -> None:
    assert cause_of(record(0, 0)) is None
    assert cause_of(record(0, 0, status=503, error="HTTP 503: not ready")) == "HTTP 503"
    sse = record(0, 0, error="stream error: transfer_failed: link reset")
    assert cause_of(sse) == "SSE transfer_failed"
    assert cause_of(record(0, 0, status=0, error="ConnectError: refused")) == "connection"
    assert cause_of(record(0, 0, status=0, error="timeout after 60 s")) == "timeout"
    assert cause_of(record(0, 0, error="no tokens received")) == "no tokens"
    assert cause_of(record(0, 0, completion_tokens=3)) == "truncated"


def test_a_clean_run_passes_every_check() -> None:
    verdict = judge(steady(), SCHEDULE, CLEAN)
    assert verdict["passed"], verdict["checks"]
    assert verdict["failures_by_cause"] == {}
    assert [r["after_s"] for r in verdict["checks"]["recovered"]["faults"]] == [10.0, 10.0]


def test_failures_in_a_fault_window_are_counted_against_it() -> None:
    records = steady()
    records[70] = record(70, 35.0, status=503, error="HTTP 503: no prefill worker")
    records[100] = record(100, 50.0, error="stream error: transfer_failed: reset")
    verdict = judge(records, SCHEDULE, CLEAN)
    assert verdict["checks"]["all_explained"]["passed"]
    assert verdict["per_fault"][0]["failures"] == {"HTTP 503": 1, "SSE transfer_failed": 1}
    assert verdict["per_fault"][1]["failures"] == {}


def test_a_failure_outside_every_fault_window_is_unexplained() -> None:
    records = steady()
    records[20] = record(20, 10.0, status=429, error="HTTP 429: busy")
    verdict = judge(records, SCHEDULE, CLEAN)
    assert not verdict["passed"]
    assert [f["index"] for f in verdict["checks"]["all_explained"]["unexplained"]] == [20]


def test_broken_connections_are_losses_unless_the_router_is_faulted() -> None:
    records = steady()
    records[70] = record(70, 35.0, status=0, error="RemoteProtocolError: closed")
    records[162] = record(162, 81.0, status=0, error="ConnectError: refused")
    records[164] = record(164, 82.0, error="no tokens received")
    verdict = judge(records, SCHEDULE, CLEAN)
    silent = [f["index"] for f in verdict["checks"]["no_silent_loss"]["silent"]]
    assert silent == [70, 164]  # the connect error while the router restarts has its cause


def test_hung_requests_fail_the_run() -> None:
    records = steady()
    records[4] = record(4, 2.0, e2e=75.0)  # ended, but past the 60 s bound
    records[6] = record(6, 3.0, e2e=60.0, status=0, error="timeout after 60 s")
    verdict = judge(records, SCHEDULE, CLEAN)
    assert [h["index"] for h in verdict["checks"]["no_hung"]["hung"]] == [4, 6]
    assert not verdict["passed"]


def test_leaks_and_missing_reports_fail_the_run() -> None:
    leaky = {"prfaas-0": {"leak_report": "2 blocks held", "num_live_requests": 0}}
    assert not judge(steady(), SCHEDULE, leaky)["checks"]["leak_free"]["passed"]
    live = {"prfaas-0": {"leak_report": "", "num_live_requests": 1}}
    assert not judge(steady(), SCHEDULE, live)["checks"]["leak_free"]["passed"]
    assert not judge(steady(), SCHEDULE, {})["checks"]["leak_free"]["passed"]


def test_throughput_that_stays_down_after_a_fault_is_not_recovered() -> None:
    # Every request sent from the first fault's start to 75 s fails (45 s: more than the
    # 10 s fault plus the 30 s recovery allowance).
    records = steady()
    for i, r in enumerate(records):
        if 30.0 <= r.start_s < 75.0:
            records[i] = record(r.index, r.start_s, status=503, error="HTTP 503: down")
    verdict = judge(records, SCHEDULE, CLEAN)
    first, second = verdict["checks"]["recovered"]["faults"]
    assert not first["recovered"] and first["measured"]
    assert second["recovered"]
    assert not verdict["checks"]["recovered"]["passed"]


def test_slow_success_does_not_count_as_throughput() -> None:
    # After the fault every request succeeds, but 20x slower than the baseline: not recovered.
    records = [record(i, i / 2.0, e2e=0.5 if i / 2.0 < 30.0 else 10.0) for i in range(240)]
    verdict = judge(records, SCHEDULE, CLEAN)
    assert verdict["baseline"]["slow_bound_s"] == 2.0
    assert not verdict["checks"]["recovered"]["faults"][0]["recovered"]
