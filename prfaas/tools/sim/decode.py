"""A decode instance's engine, on the simulated clock: continuous batching at a fixed step grid.

Seats: a request holds one of `max_batch` seats (and prompt + output tokens of KV) from the
moment the router places it here (the worker counts KV-waiting requests against its seats, so a
full decode worker takes no one) until it finishes. Once its KV has arrived it joins the running
batch at the next step boundary and produces one token per step; its first token (sampled by the
prefill) is delivered when the KV arrives. The step time is the emulated backend's
`decode_step_seconds`, independent of batch and context there; `per_seq_s` and
`per_kv_token_s` add a linear batch/context term (taken at the request's join) for other backends.
One event per request: its finish is known when it joins, so the simulator never steps tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.request import SimRequest


@dataclass(frozen=True)
class DecodeTiming:
    step_s: float
    per_seq_s: float = 0.0
    per_kv_token_s: float = 0.0


class DecodeStage:
    def __init__(
        self,
        loop: EventLoop,
        timing: DecodeTiming,
        max_batch: int,
        kv_budget_tokens: int,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.loop, self.timing, self.max_batch = loop, timing, max_batch
        self.kv_budget_tokens = kv_budget_tokens
        self.on_change = on_change
        self.reserved = 0
        self.reserved_tokens = 0
        self.waiting_for_kv = 0
        self.running = 0
        self.context_tokens = 0
        self._origin = 0.0
        self.on_finish: Callable[[SimRequest], None] | None = None

    @property
    def load(self) -> float:
        return self.reserved / self.max_batch

    @property
    def free_kv_tokens(self) -> int:
        return self.kv_budget_tokens - self.reserved_tokens

    def reserve(self, req: SimRequest) -> None:
        self.reserved += 1
        self.reserved_tokens += req.input_tokens + req.output_tokens
        self.waiting_for_kv += 1
        if self.on_change is not None:
            self.on_change()

    def kv_arrived(self, req: SimRequest) -> None:
        now = self.loop.now
        t = self.timing
        self.waiting_for_kv -= 1
        req.first_token_s = now
        if self.running == 0:
            self._origin = now
            join = now
        else:
            join = self._origin + math.ceil((now - self._origin) / t.step_s - 1e-9) * t.step_s
        self.running += 1
        self.context_tokens += req.input_tokens
        step = t.step_s + t.per_seq_s * self.running + t.per_kv_token_s * self.context_tokens
        req.decode_join_s, req.step_s = join, step
        self.loop.at(join + max(req.output_tokens - 1, 0) * step, self._finish, req)
        if self.on_change is not None:
            self.on_change()

    def _finish(self, req: SimRequest) -> None:
        req.finish_s = self.loop.now
        self.running -= 1
        self.context_tokens -= req.input_tokens
        self.reserved -= 1
        self.reserved_tokens -= req.input_tokens + req.output_tokens
        if self.on_finish is not None:
            self.on_finish(req)
        if self.on_change is not None:
            self.on_change()

    @property
    def idle(self) -> bool:
        return self.reserved == 0
