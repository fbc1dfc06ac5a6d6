"""The simulator's event loop: a heap of timed callbacks on one simulated clock.

Determinism: events at the same time run in the order they were scheduled (a sequence number
breaks ties), and every random draw comes from the loop's one seeded `numpy` generator, so a run
is a function of its inputs and seed. Nothing here reads the wall clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import numpy as np


class EventLoop:
    """Simulated time in seconds from 0; `schedule` callbacks, `run_until` a time."""

    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.rng = np.random.default_rng(seed)
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.events_run = 0

    def at(self, when: float, callback: Callable[..., Any], *args: Any) -> None:
        """Run `callback(*args)` at simulated time `when` (never before now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, callback, args))

    def after(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + delay, callback, *args)

    @property
    def pending(self) -> int:
        return len(self._heap)

    def run_until(self, end: float, on_event: Callable[[float], None] | None = None) -> None:
        """Run every event scheduled at or before `end`; the clock stops at `end` (or at the
        last event when the heap empties first). `on_event(now)` is a cheap hook (progress)."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end:
            when, _, callback, args = pop(heap)
            self.now = when
            callback(*args)
            self.events_run += 1
            if on_event is not None:
                on_event(when)
        self.now = max(self.now, end) if heap else self.now
