"""A prefill instance's engine, on the simulated clock: FIFO queue, token budget, chunked prefill.

As the engine's scheduler: each step fills `max_batched_tokens` with chunks of the queued
requests in arrival order; a step's duration is the emulated backend's, the sum over its chunks of
P(end) - P(start) (+ P(0) on a request's first chunk). The prefix hit is taken when the request
reaches the head of the queue (from this instance's own cache, which may have changed since the
router looked). Steps in which the head request alone fills the whole budget are merged into one
event (at most 1 / `pieces` of the request at a time): the clock lands on the same times, and the
KV of each piece is handed to the link as it is produced, so a transfer overlaps its prefill.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from prfaas.tools.sim.cache import InstanceCache
from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.profile import ProfileLookup
from prfaas.tools.sim.request import SimRequest


@dataclass(eq=False)
class PrefillJob:
    request: SimRequest
    on_progress: Callable[[PrefillJob, float], None]
    """Called with the fraction of the prompt's KV now produced (1.0 last: the prefill is done)."""
    position: int = -1
    """Next token to compute; -1 until the job reaches the engine (then its cached length)."""
    first_chunk: bool = True
    junction: int = 0
    """Where the prompt's cached KV stopped matching at admission, past its hit (tokens; 0: none)."""


class PrefillStage:
    def __init__(
        self,
        loop: EventLoop,
        profile: ProfileLookup,
        max_batched_tokens: int = 2048,
        cache: InstanceCache | None = None,
        pieces: int = 4,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.loop, self.profile, self.budget = loop, profile, max_batched_tokens
        self.cache, self.pieces, self.on_change = cache, max(1, pieces), on_change
        self.queue: deque[PrefillJob] = deque()
        self.busy = False
        self.busy_s = 0.0
        self.tokens_computed = 0

    @property
    def depth(self) -> int:
        return len(self.queue)

    def remaining_s(self) -> float:
        """Compute seconds of what is queued or running here: how long a prefill placed now waits
        (the router's `predicted_wait_s`, which estimates the same from its token count and the
        worker's drain rate)."""
        return sum(self.profile.chunk_seconds(max(j.position, 0), j.request.input_tokens,
                                              j.first_chunk) for j in self.queue)  # fmt: skip

    def submit(self, job: PrefillJob) -> None:
        self.queue.append(job)
        if not self.busy:
            self._step()
        if self.on_change is not None:
            self.on_change()

    def _admit(self, job: PrefillJob) -> None:
        req = job.request
        cached = 0
        if self.cache is not None and req.block_hashes:
            cached, job.junction = self.cache.match(req.block_hashes, req.input_tokens)
        req.cached_tokens = cached
        req.prefill_start_s = self.loop.now
        job.position = cached

    def _step(self) -> None:
        """Plan the next step from the queue head and schedule its end."""
        if not self.queue:
            self.busy = False
            return
        self.busy = True
        head = self.queue[0]
        if head.position < 0:
            self._admit(head)
        left = head.request.input_tokens - head.position
        if left >= 2 * self.budget:
            # The head alone fills whole steps: merge up to 1/pieces of the prompt's steps.
            steps = math.ceil(head.request.input_tokens / self.budget / self.pieces)
            take = min(left // self.budget - 1, steps) * self.budget
            take = max(take, self.budget)
            plan = [(head, head.position, head.position + take)]
        else:
            plan, room = [], self.budget
            for job in self.queue:
                if room <= 0:
                    break
                if job.position < 0:
                    self._admit(job)
                n = min(room, job.request.input_tokens - job.position)
                plan.append((job, job.position, job.position + n))
                room -= n
        duration = sum(self.profile.chunk_seconds(s, e, job.first_chunk) for job, s, e in plan)
        self.busy_s += duration
        self.loop.after(duration, self._step_done, plan)

    def _step_done(self, plan: list[tuple[PrefillJob, int, int]]) -> None:
        for job, start, end in plan:
            job.position, job.first_chunk = end, False
            self.tokens_computed += end - start
            req = job.request
            done = end >= req.input_tokens
            if done:
                self.queue.remove(job)
                req.prefill_end_s = self.loop.now
                if self.cache is not None and req.block_hashes:
                    self.cache.store(req.block_hashes, req.input_tokens, req.cached_tokens,
                                     job.junction)  # fmt: skip
            span = req.input_tokens - req.cached_tokens
            job.on_progress(job, 1.0 if done else (end - req.cached_tokens) / max(span, 1))
        if self.on_change is not None:
            self.on_change()
        self._step()
