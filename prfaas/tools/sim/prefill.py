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
        poll_s: float = 0.5,
    ) -> None:
        self.loop, self.profile, self.budget = loop, profile, max_batched_tokens
        self.poll_s = poll_s
        """The router's load poll interval (`RegistryConfig.poll_interval_s`)."""
        self.cache, self.pieces, self.on_change = cache, max(1, pieces), on_change
        self.queue: deque[PrefillJob] = deque()
        self.busy = False
        self.busy_s = 0.0
        self.tokens_computed = 0
        self.backlog_s = 0.0
        """The engine's `prefill_backlog_seconds` at the last change: each queued job's cost
        from its position (a job not yet admitted counted uncached, as the engine counts it)."""
        self._step_start = 0.0
        self._poll: tuple[int, float] = (-1, 0.0)
        """(poll index, backlog then): the backlog at the start of the poll interval in which
        the state last changed (`reported_backlog_s`)."""

    @property
    def depth(self) -> int:
        return len(self.queue)

    def backlog_at(self, t: float) -> float:
        """The backlog at `t`, no change since the last one: a step in progress computes it down
        second for second (a step's duration is exactly what it takes off its jobs' costs)."""
        return self.backlog_s - (t - self._step_start) if self.busy else self.backlog_s

    def reported_backlog_s(self) -> tuple[float, float]:
        """(backlog, time) of the last load report: workers are polled every `poll_s` on the
        simulated clock, and a report gives the backlog the engine held then
        (`EngineCore.prefill_backlog_seconds`; the engine's drops at its step ends, this one
        continuously through a merged step)."""
        k = int(self.loop.now // self.poll_s)
        at = k * self.poll_s
        if k > self._poll[0]:  # nothing changed since that poll
            return self.backlog_at(at), at
        return self._poll[1], at

    def _mark(self) -> None:
        """Before a change: keep the backlog of the poll interval the change falls in."""
        k = int(self.loop.now // self.poll_s)
        if k > self._poll[0]:
            self._poll = (k, self.backlog_at(k * self.poll_s))

    def _cost(self, job: PrefillJob) -> float:
        req = job.request
        return self.profile.chunk_seconds(max(job.position, 0), req.input_tokens, job.first_chunk)

    def submit(self, job: PrefillJob) -> None:
        self._mark()
        self.backlog_s += self._cost(job)
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
        before = self._cost(job)
        job.position = cached
        self.backlog_s += self._cost(job) - before

    def _step(self) -> None:
        """Plan the next step from the queue head and schedule its end."""
        if not self.queue:
            self.busy = False
            self.backlog_s = 0.0  # no float residue on an idle engine
            return
        self.busy, self._step_start = True, self.loop.now
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
        self._mark()
        self.backlog_s = self.backlog_at(self.loop.now)
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
