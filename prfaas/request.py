"""The one mutable request object of a process.

A `Request` is created by a worker's service layer from a wire message, owned by the engine's
scheduler while it lives, and never pickled across a process boundary (map it to a message instead).
Counters are stored; everything derived from them is a property, so they cannot disagree.

Token positions: the prompt occupies [0, num_prompt_tokens); output token i sits at position
num_prompt_tokens + i. `num_computed_tokens` counts positions whose cache (KV and linear state) has
been written. Under the "first token shipped" handoff (docs/architecture.md) the last sampled token
is never in the cache yet, so a running decode always has num_computed_tokens == num_tokens - 1.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from prfaas.sampling import FinishReason, SamplingParams, check_stop


class RequestKind(enum.Enum):
    # Prefill and decode in this process (a `mixed` PD worker, the in-process reference).
    FULL = "full"
    # PrfaaS / PD-P: prefill all prompt tokens, sample the first token, hand the cache off, finish.
    # The cache stays alive after finishing until the owner calls release() after the transfer.
    PREFILL_ONLY = "prefill_only"
    # PD-D: the cache of all prompt tokens and the first token arrive from a prefill elsewhere.
    DECODE_ONLY = "decode_only"


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    # decode_only: blocks and a state slot are preallocated; the transfer writes into them.
    WAITING_FOR_KV = "waiting_for_kv"
    RUNNING = "running"
    FINISHED_STOPPED = "finished_stopped"
    FINISHED_LENGTH = "finished_length"
    FINISHED_ABORTED = "finished_aborted"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset(
    {
        RequestStatus.FINISHED_STOPPED,
        RequestStatus.FINISHED_LENGTH,
        RequestStatus.FINISHED_ABORTED,
        RequestStatus.FAILED,
    }
)

_FINISHED_BY = {
    FinishReason.STOP: RequestStatus.FINISHED_STOPPED,
    FinishReason.LENGTH: RequestStatus.FINISHED_LENGTH,
}


@dataclass(eq=False)
class Request:
    request_id: str
    prompt_token_ids: list[int]
    sampling_params: SamplingParams
    kind: RequestKind = RequestKind.FULL
    # None: never stop on EOS (the emulated backend has no EOS).
    eos_token_id: int | None = None
    arrival_time: float = field(default_factory=time.monotonic)

    status: RequestStatus = RequestStatus.WAITING
    num_prompt_tokens: int = 0
    num_computed_tokens: int = 0
    # Prompt tokens taken from the prefix cache instead of computed (block aligned).
    num_cached_tokens: int = 0
    output_token_ids: list[int] = field(default_factory=list)
    # Set by the scheduler's KV manager: the request's full-attention blocks, in position order,
    # and its live linear-state slot. Shared prefix blocks are referenced, not owned.
    block_table: list[int] = field(default_factory=list)
    state_slot: int | None = None
    error: str | None = None
    # time.monotonic() when the step that first computed part of its prompt began (set by the
    # engine on its compute thread; None until then, and for a prompt served from the cache alone).
    compute_started_at: float | None = None

    def __post_init__(self) -> None:
        self.prompt_token_ids = list(self.prompt_token_ids)
        self.num_prompt_tokens = len(self.prompt_token_ids)
        if self.num_prompt_tokens == 0:
            raise ValueError(f"request {self.request_id}: empty prompt")
        if self.sampling_params.max_tokens < 1:
            raise ValueError(f"request {self.request_id}: max_tokens must be >= 1")
        self.check_invariants()

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.num_output_tokens

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def last_token_id(self) -> int:
        return self.output_token_ids[-1] if self.output_token_ids else self.prompt_token_ids[-1]

    @property
    def is_prefill_done(self) -> bool:
        return self.num_computed_tokens >= self.num_prompt_tokens

    @property
    def num_prompt_tokens_left(self) -> int:
        return max(0, self.num_prompt_tokens - self.num_computed_tokens)

    @property
    def max_cache_tokens(self) -> int:
        """Positions this request may ever write: the last sampled token is never fed back."""
        if self.kind is RequestKind.PREFILL_ONLY:
            return self.num_prompt_tokens
        return self.num_prompt_tokens + self.sampling_params.max_tokens - 1

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    def stop_status(self) -> RequestStatus | None:
        """The finished status the output so far implies, or None to keep going
        (`prfaas.sampling.check_stop`, the one stop rule)."""
        reason = check_stop(self.output_token_ids, self.sampling_params, self.eos_token_id)
        if reason is None:
            return None
        return _FINISHED_BY[reason]

    def check_invariants(self) -> None:
        assert self.num_prompt_tokens == len(self.prompt_token_ids)
        assert 0 <= self.num_cached_tokens <= self.num_computed_tokens <= self.num_tokens
        if self.output_token_ids:
            # The sampled token is fed on the next step, never before.
            assert self.num_computed_tokens <= self.num_tokens - 1
        if self.status is RequestStatus.RUNNING and self.output_token_ids:
            assert self.num_computed_tokens == self.num_tokens - 1
