"""RestartHistory: exponential backoff, reset after a stable run, crash-loop detection."""

from __future__ import annotations

from prfaas.launcher.restart_policy import RestartHistory, RestartPolicy


def test_backoff_doubles_up_to_the_cap() -> None:
    history = RestartHistory(
        RestartPolicy(backoff_initial_s=0.5, backoff_max_s=3.0, crash_loop_restarts=100)
    )
    delays = [history.next_delay(now=10.0 * i, uptime_s=1.0) for i in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_stable_run_resets_the_backoff() -> None:
    history = RestartHistory(RestartPolicy(stable_after_s=60.0, crash_loop_restarts=100))
    assert history.next_delay(0.0, uptime_s=1.0) == 0.5
    assert history.next_delay(5.0, uptime_s=1.0) == 1.0
    assert history.next_delay(500.0, uptime_s=120.0) == 0.5


def test_too_many_restarts_within_the_window_is_a_crash_loop() -> None:
    policy = RestartPolicy(crash_loop_restarts=3, crash_loop_window_s=60.0)
    history = RestartHistory(policy)
    assert [history.next_delay(float(t), 0.1) for t in (0, 2, 4)] == [0.5, 1.0, 2.0]
    assert history.recent_restarts == 3
    assert history.next_delay(8.0, 0.1) is None


def test_restarts_outside_the_window_do_not_count() -> None:
    history = RestartHistory(RestartPolicy(crash_loop_restarts=2, crash_loop_window_s=10.0))
    assert history.next_delay(0.0, 0.1) is not None
    assert history.next_delay(1.0, 0.1) is not None
    # Both restarts (at 0.5 s and 2 s) lie more than 10 s back at t = 20 s.
    assert history.next_delay(20.0, 0.1) is not None
