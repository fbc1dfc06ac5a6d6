"""EngineSnapshot: what the engine's queues and memory looked like after its latest step.

Owned by the compute thread, which builds a new (immutable) snapshot after every step and every
batch of applied calls and publishes it by a single reference assignment; readers on the event
loop (load reports, health) take the latest one without waiting for a step. A step may take
seconds on a busy CPU worker, and a load report that waited for it made healthy workers look
dead to the router (the reason this type exists).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prfaas.engine.core import EngineCore

_MAX_IDS_IN_REPORT = 8
LEAK_CHECK_PERIOD_S = 1.0


@dataclass(frozen=True)
class EngineSnapshot:
    num_waiting: int = 0
    num_running: int = 0
    num_waiting_for_kv: int = 0
    num_live: int = 0
    cache_usage: float = 0.0
    """Fraction of the cache byte budget in use (evictable prefix entries included)."""
    leak_report: str = ""
    """Empty when the engine holds nothing it should not (`EngineCore.leak_report`), checked only
    when the engine is idle; with live requests it names them (held, not leaked)."""
    prefill_backlog_s: float | None = None
    """Predicted compute seconds of the prefills held (`EngineCore.prefill_backlog_seconds`);
    None when the backend has no cost model."""
    num_steps: int = 0
    taken_at: float = field(default_factory=time.monotonic)
    leak_checked_at: float = 0.0
    """When the idle leak check last ran; it scans every reference count, so it is rate-limited."""

    @classmethod
    def of(cls, engine: EngineCore, previous: EngineSnapshot | None = None) -> EngineSnapshot:
        """Read `engine` (on the compute thread only: the scheduler is not thread-safe). The idle
        leak check (a scan of every reference count) runs when the engine has just gone idle,
        whenever the last report named something, and otherwise at most every
        `LEAK_CHECK_PERIOD_S` while it stays idle and clean."""
        s = engine.scheduler
        live = list(s.requests)
        now = time.monotonic()
        checked_at = previous.leak_checked_at if previous is not None else 0.0
        if live:
            shown = ", ".join(live[:_MAX_IDS_IN_REPORT])
            more = (
                f" (+{len(live) - _MAX_IDS_IN_REPORT} more)"
                if len(live) > _MAX_IDS_IN_REPORT
                else ""
            )
            report = f"live requests: {shown}{more}"
        elif (
            previous is not None
            and previous.num_live == 0
            and previous.leak_report == ""
            and now - previous.leak_checked_at < LEAK_CHECK_PERIOD_S
            and not engine.scheduler.kv.transfers.held()
        ):
            # Clean a moment ago and no prefix span open now: skip the reference scan. A report
            # that named something is re-checked on every publish, so it clears at once.
            report = ""
        else:
            checked_at = now
            report = engine.leak_report()
        return cls(
            num_waiting=len(s.waiting),
            num_running=s.num_with_kv,
            num_waiting_for_kv=len(s.waiting_for_kv),
            num_live=len(live),
            cache_usage=engine.cache_usage(),
            prefill_backlog_s=engine.prefill_backlog_seconds(),
            leak_report=report,
            num_steps=engine.num_steps,
            taken_at=now,
            leak_checked_at=checked_at,
        )
