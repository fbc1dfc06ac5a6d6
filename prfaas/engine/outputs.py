"""Plain data flowing between scheduler, backend and worker within one engine step.

`SchedulerOutput` goes down (scheduler -> backend), `RunnerOutput` comes up (backend ->
scheduler), `RequestOutput` goes out (scheduler -> worker). No tensors: lists and ints only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from prfaas.request import Request, RequestStatus


@dataclass
class PrefillChunk:
    """Compute prompt positions [start, end) of one request, starting from its cache at `start`."""

    # Read-only for the backend (sampling params, prompt); the scheduler owns it.
    request: Request
    start: int
    end: int
    # Before computing: copy this checkpoint slot into the request's live state slot (prefix hit).
    copy_state_from: int | None = None
    # (position, slot): copy the linear state after `position` tokens into `slot` (a block
    # boundary inside (start, end]); the scheduler registers them as prefix checkpoints on update.
    checkpoints: list[tuple[int, int]] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return self.end - self.start

    @property
    def is_last(self) -> bool:
        """The chunk that reaches the end of the prompt: the backend samples the first token."""
        return self.end == self.request.num_prompt_tokens


@dataclass
class DecodeItem:
    """Feed the request's last sampled token at `position` and sample the next one."""

    request: Request
    token_id: int
    position: int


@dataclass
class SchedulerOutput:
    step_id: int
    prefills: list[PrefillChunk] = field(default_factory=list)
    decodes: list[DecodeItem] = field(default_factory=list)

    @property
    def num_scheduled_tokens(self) -> int:
        return sum(c.num_tokens for c in self.prefills) + len(self.decodes)

    @property
    def is_empty(self) -> bool:
        return not self.prefills and not self.decodes


@dataclass
class RunnerOutput:
    # request_id -> sampled token, for every decode item and every prefill chunk that is_last.
    sampled_token_ids: dict[str, int] = field(default_factory=dict)
    # Seconds the backend spent computing this step (measured, or emulated).
    compute_seconds: float = 0.0
    # request_id -> why its item failed. The backend reports an item here (instead of raising)
    # when the failure is its own and left every other item of the step intact; the scheduler
    # fails those requests alone and applies the rest of the step.
    failed: dict[str, str] = field(default_factory=dict)


class RequestEvent(enum.Enum):
    # New tokens (possibly the first) and/or a finish.
    TOKENS = "tokens"
    # decode_only: destination blocks and state slot are ready; the transfer may start writing.
    PREALLOCATED = "preallocated"


@dataclass
class RequestOutput:
    request_id: str
    status: RequestStatus
    new_token_ids: list[int] = field(default_factory=list)
    event: RequestEvent = RequestEvent.TOKENS
    num_cached_tokens: int = 0
    error: str | None = None
    # prefill_only: finished, but its cache is held until release(request_id).
    cache_held: bool = False

    @property
    def finished(self) -> bool:
        return self.status.is_finished
