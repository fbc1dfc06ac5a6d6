"""The planner lease a worker arbitrates: which router's long-term planner may change roles.

Several router replicas serve the same workers, and each runs the long-term planner; two planners
acting on the same window once moved two decode workers to prefill where one was planned (both
re-roled pd-1 in the two-router run, BENCHMARKS.md "Several routers"). So role changes need one
leader. There is no shared store between routers, but they share the workers: the PD worker with
the smallest id that a router sees holds the lease (prfaas/router/planner_leadership.py), and the
first router to ask gets it for a time to live it renews every planner period.

Owned by the worker's servicer (`CommonRpcs.PlannerLease`); lives in memory only, so a restarted
arbiter grants the lease to whoever asks first again, which is the same router within one
planner period in practice. Clock: `time.monotonic`, injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseAnswer:
    granted: bool
    holder: str
    """Who holds the lease after the call ("" when nobody does)."""
    remaining_s: float


class PlannerLease:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._holder = ""
        self._expires = 0.0

    def request(self, holder: str, ttl_s: float) -> LeaseAnswer:
        """Grant (or renew) the lease to `holder` for `ttl_s` from now when it is free, expired or
        already theirs; otherwise say who holds it and for how long."""
        if not holder or not ttl_s > 0:
            raise ValueError("a lease needs a holder and a positive ttl_s")
        now = self._clock()
        if self._holder in ("", holder) or now >= self._expires:
            self._holder, self._expires = holder, now + ttl_s
            return LeaseAnswer(True, holder, ttl_s)
        return LeaseAnswer(False, self._holder, self._expires - now)

    def release(self, holder: str) -> LeaseAnswer:
        """Give the lease up if `holder` holds it (a router stopping); otherwise change nothing."""
        now = self._clock()
        if self._holder == holder or now >= self._expires:
            self._holder, self._expires = "", 0.0
            return LeaseAnswer(False, "", 0.0)
        return LeaseAnswer(False, self._holder, self._expires - now)
