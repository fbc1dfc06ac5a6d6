"""A decode instance's engine, on the simulated clock: continuous batching at a fixed step grid.

Seats: a request holds prompt + output tokens of KV from the moment the router places it here,
and one of `max_batch` seats from when its KV is complete until it finishes, as the engine seats it
(issue 12/17: a seat is not held while the prefill still waits in a queue; the router's
`WorkerSnapshot.seats_taken` is the running batch plus `kv_ready`, so a full decode worker takes no
one, while `load` also counts the placed requests still to arrive). Once its KV has arrived it
joins the running batch at the next step boundary, or waits in `kv_ready` for a seat (FIFO) when
every seat is taken, and produces one token per step; its first token (sampled by the
prefill) is delivered at that boundary, and its admission applied at the boundary after it is
placed (`DecodeTiming.step_boundary_calls`: the running system's TTFT floor). The step time is the emulated backend's
`decode_step_seconds`, independent of batch and context there; `per_seq_s` and
`per_kv_token_s` add a linear batch/context term (taken at the request's join) for other backends.
One event per request: its finish is known when it joins, so the simulator never steps tokens.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.request import SimRequest


@dataclass(frozen=True)
class DecodeTiming:
    step_s: float
    per_seq_s: float = 0.0
    per_kv_token_s: float = 0.0
    step_boundary_calls: bool = True
    """The engine applies calls between steps (the worker's compute thread runs one step at a
    time): a decode admission and the KV-ready that releases the first token each wait for the
    step in progress, on average half a step while a batch runs, none on an idle engine. This is
    the running system's per-request TTFT floor after issue 12's hop fixes (BENCHMARKS.md, "Where
    the 2.11 s and the 1.27 s went": measured 0.48 s and 0.45 s at a 0.8 s step, predicted 0.40 s
    each); the remaining ~0.1 s of gRPC and event-loop hops is `admit_hop_s` and
    `first_token_hop_s`, 0 unless read from a recorded run (hops.py). False: the old model
    (admission immediate, first token when the KV arrives)."""
    admit_hop_s: float = 0.0
    """Added to every admission: the call's way to the worker and back beyond the step wait
    (hops.py; 0: none)."""
    first_token_hop_s: float = 0.0
    """Added to every first token: its release beyond the step boundary (hops.py; 0: none)."""


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
        self.kv_ready: deque[SimRequest] = deque()
        """KV complete, first token out, waiting for a seat (every seat taken)."""
        self.context_tokens = 0
        self._origin = 0.0
        self.on_finish: Callable[[SimRequest], None] | None = None

    @property
    def load(self) -> float:
        """Placed here and not finished, over the seats (the router's ranking load)."""
        return self.reserved / self.max_batch

    @property
    def seats_taken(self) -> float:
        """Requests whose KV is complete here over the seats (`WorkerLoad.num_running`)."""
        return (self.running + len(self.kv_ready)) / self.max_batch

    @property
    def free_kv_tokens(self) -> int:
        return self.kv_budget_tokens - self.reserved_tokens

    def reserve(self, req: SimRequest) -> None:
        self.reserved += 1
        self.reserved_tokens += req.input_tokens + req.output_tokens
        self.waiting_for_kv += 1
        if self.on_change is not None:
            self.on_change()

    def next_boundary(self) -> float:
        """When the engine next applies a call: now when idle, else the end of the running
        step (steps run on a grid from when the batch last started)."""
        now = self.loop.now
        if self.running == 0:
            return now
        step = self.timing.step_s
        return self._origin + math.ceil((now - self._origin) / step - 1e-9) * step

    def admitted_at(self) -> float:
        """When an admission placed now is applied (the KV may move from then; the prefill starts
        with the admission, not after it)."""
        at = self.next_boundary() if self.timing.step_boundary_calls else self.loop.now
        return at + self.timing.admit_hop_s

    def kv_arrived(self, req: SimRequest) -> None:
        now = self.loop.now
        t = self.timing
        self.waiting_for_kv -= 1
        join = self.next_boundary()
        if self.running == 0:
            self._origin = now
        req.first_token_s = (join if t.step_boundary_calls else now) + t.first_token_hop_s
        if self.running >= self.max_batch:
            self.kv_ready.append(req)
        else:
            self._seat(req, join)
        if self.on_change is not None:
            self.on_change()

    def _seat(self, req: SimRequest, join: float) -> None:
        """The request decodes from `join` (its second token one step later)."""
        t = self.timing
        self.running += 1
        self.context_tokens += req.input_tokens
        step = t.step_s + t.per_seq_s * self.running + t.per_kv_token_s * self.context_tokens
        req.decode_join_s, req.step_s = join, step
        self.loop.at(join + max(req.output_tokens - 1, 0) * step, self._finish, req)

    def _finish(self, req: SimRequest) -> None:
        req.finish_s = self.loop.now
        self.running -= 1
        self.context_tokens -= req.input_tokens
        self.reserved -= 1
        self.reserved_tokens -= req.input_tokens + req.output_tokens
        if self.kv_ready:  # a step boundary: the freed seat goes to the oldest waiting
            self._seat(self.kv_ready.popleft(), self.loop.now)
        if self.on_finish is not None:
            self.on_finish(req)
        if self.on_change is not None:
            self.on_change()

    @property
    def idle(self) -> bool:
        return self.reserved == 0
