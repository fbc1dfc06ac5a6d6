"""EngineSnapshot's leak report: fresh when it matters, cheap when nothing changed."""

from __future__ import annotations

import time

from engine_helpers import make_engine, make_req

from prfaas.engine.snapshot import LEAK_CHECK_PERIOD_S, EngineSnapshot


def test_a_report_that_named_something_is_rechecked_at_once() -> None:
    engine = make_engine()
    stale = EngineSnapshot(leak_report="prefix export/import spans held: ['s']",
                           leak_checked_at=time.monotonic())  # fmt: skip
    assert EngineSnapshot.of(engine, stale).leak_report == ""


def test_live_requests_are_named_and_an_idle_engine_is_clean() -> None:
    engine = make_engine()
    engine.add_request(make_req("a", 10))
    snap = EngineSnapshot.of(engine)
    assert snap.num_live == 1 and snap.leak_report == "live requests: a"
    while engine.has_work:
        engine.step()
    assert EngineSnapshot.of(engine, snap).leak_report == ""


def test_a_leaked_reference_is_reported_within_the_check_period() -> None:
    engine = make_engine()
    clean = EngineSnapshot.of(engine)
    assert clean.leak_report == ""
    engine.pool.block_refs[0] = 1  # a reference nobody will drop
    # Right after a clean check the scan is skipped (rate limit) ...
    assert EngineSnapshot.of(engine, clean).leak_report == ""
    # ... and runs again once the period has passed.
    old = EngineSnapshot(leak_checked_at=time.monotonic() - LEAK_CHECK_PERIOD_S - 0.01)
    assert EngineSnapshot.of(engine, old).leak_report == "block references leaked"
    engine.pool.block_refs[0] = 0
