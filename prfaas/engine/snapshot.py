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


@dataclass(frozen=True)
class EngineSnapshot:
    num_waiting: int = 0
    num_running: int = 0
    num_waiting_for_kv: int = 0
    num_live: int = 0
    cache_usage: float = 0.0
    """Fraction of the cache byte budget in use (evictable prefix entries included)."""
    leak_report: str = ""
    """Empty when the engine holds nothing it should not: checked in full only when the engine is
    idle (no live request); with live requests it names them (held, not leaked)."""
    num_steps: int = 0
    taken_at: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, engine: EngineCore) -> EngineSnapshot:
        """Read `engine` (on the compute thread only: the scheduler is not thread-safe)."""
        s = engine.scheduler
        live = list(s.requests)
        if live:
            shown = ", ".join(live[:_MAX_IDS_IN_REPORT])
            more = f" (+{len(live) - _MAX_IDS_IN_REPORT} more)" if len(live) > 8 else ""
            report = f"live requests: {shown}{more}"
        else:
            try:
                engine.assert_no_leaks()
                report = ""
            except AssertionError as exc:
                report = str(exc) or "engine holds resources"
        return cls(
            num_waiting=len(s.waiting),
            num_running=len(s.running),
            num_waiting_for_kv=len(s.waiting_for_kv),
            num_live=len(live),
            cache_usage=engine.cache_usage(),
            leak_report=report,
            num_steps=engine.num_steps,
        )
