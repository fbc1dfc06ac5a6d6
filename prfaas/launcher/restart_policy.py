"""When a supervised child that died is restarted, and when the supervisor gives up on it.

A child that dies is restarted after an exponential backoff (`backoff_initial_s`, doubling up to
`backoff_max_s`); a child that stayed up `stable_after_s` before dying starts again from the
initial backoff. A child restarted `crash_loop_restarts` times within `crash_loop_window_s` that
dies once more is crash-looping: the supervisor stops restarting it and ends the deployment (a
deployment that silently lacks a process type would serve worse and worse without saying why).
One `RestartHistory` per child, owned by the supervisor's watcher thread.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 60.0
    """Up this long before dying: the backoff starts over from `backoff_initial_s`."""
    crash_loop_restarts: int = 5
    crash_loop_window_s: float = 120.0
    ready_timeout_s: float = 180.0
    """A restarted child not ready within this is killed (and that counts as a crash)."""


class RestartHistory:
    """One child's restarts: the next backoff and the restart times inside the crash window."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._backoff_s = policy.backoff_initial_s
        self._restart_times: deque[float] = deque()

    def next_delay(self, now: float, uptime_s: float) -> float | None:
        """Seconds to wait before restarting a child that just died after `uptime_s` up;
        None when it is crash-looping (give up)."""
        p = self.policy
        if uptime_s >= p.stable_after_s:
            self._backoff_s = p.backoff_initial_s
        while self._restart_times and now - self._restart_times[0] > p.crash_loop_window_s:
            self._restart_times.popleft()
        if len(self._restart_times) >= p.crash_loop_restarts:
            return None
        delay = self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, p.backoff_max_s)
        self._restart_times.append(now + delay)
        return delay

    @property
    def recent_restarts(self) -> int:
        """Restarts counted towards the crash-loop limit right now."""
        return len(self._restart_times)
