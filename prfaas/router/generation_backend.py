"""The seam between the HTTP front end and whatever generates tokens.

`http_api.py` only talks to a `GenerationBackend`. The router's dispatcher (policy, prefix index,
gRPC calls to workers) implements it for real; `FakeBackend` implements it for tests.

Contract of `GenerationBackend.generate`:
1. It is called once per HTTP request, after the prompt is tokenized and checked against
   `max_context`; it runs on the router's event loop and must never block it.
2. Admission errors (`Overloaded`, `NotReady`, `ContextTooLong`) are raised *before* the first
   event, so the HTTP layer can still answer with a status code. A `BackendError` may be raised at
   any point; after the first event it becomes an SSE error event.
3. It yields zero or more `TokenChunk`s (new ids only; EOS is never included) and then exactly one
   `GenerationFinished`, after which the iterator ends.
4. The consumer may stop iterating early (stop string matched, client gone). It then calls
   `abort(request_id)` once; the backend frees every resource of that request (worker slots, KV
   blocks, transfers) and must tolerate an abort for a request that already finished.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from prfaas.sampling import FinishReason, SamplingParams


@dataclass(frozen=True)
class GenerationRequest:
    """One generation, as handed from the HTTP layer to the backend."""

    request_id: str
    """Unique id that travels with every message and transfer of this request."""
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    """Checked at the entry (`prfaas/request_limits.py`); the workers get it over the wire."""
    stop_strings: tuple[str, ...] = ()
    """The client's stop strings. The HTTP layer matches them on decoded text and aborts; a
    backend may use them to stop earlier but need not."""


@dataclass(frozen=True)
class TokenChunk:
    """New token ids produced since the previous event (never empty)."""

    token_ids: tuple[int, ...]
    cached_tokens: int | None = None
    """Prompt tokens served from a prefix cache, when known (set on the first chunk), so usage
    is exact even when the HTTP layer stops the request before its finish event."""


@dataclass(frozen=True)
class Usage:
    """Token accounting of one finished request."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens served from a prefix cache (reported as prompt_tokens_details.cached_tokens)."""
    prefill_cluster: str = ""
    """Cluster whose worker prefilled the prompt ("" when unknown); reported beside cached_tokens
    so a client can attribute cache reuse per cluster (`prfaas bench serve`'s cache report)."""


@dataclass(frozen=True)
class GenerationFinished:
    """Last event of a generation."""

    finish_reason: FinishReason
    usage: Usage

    def with_prefill_cluster(self, cluster: str) -> GenerationFinished:
        """This event with its usage's `prefill_cluster` set."""
        u = self.usage
        usage = Usage(
            u.prompt_tokens, u.completion_tokens, u.cached_tokens, prefill_cluster=cluster
        )
        return GenerationFinished(self.finish_reason, usage)


GenerationEvent = TokenChunk | GenerationFinished


class BackendError(Exception):
    """Generation failed inside the backend (HTTP 500, or an SSE error event once streaming)."""


class Overloaded(BackendError):
    """Admission is full; the client should retry after `retry_after_s` (HTTP 429)."""

    def __init__(self, retry_after_s: float, message: str = "server is overloaded") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(BackendError):
    """The backend cannot serve yet, or is draining (HTTP 503)."""


class ContextTooLong(BackendError):
    """Prompt plus generation would exceed the context window (HTTP 400)."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(message or f"This model's maximum context length is {limit} tokens.")
        self.limit = limit


class GenerationBackend(abc.ABC):
    """Generates tokens for prompts; implemented by the router's dispatcher and by fakes."""

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """The model id clients send as `model` and `/v1/models` lists."""

    @property
    @abc.abstractmethod
    def max_context(self) -> int:
        """Maximum prompt + completion length in tokens."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether new requests can be served now (cheap; called by every `/ready` probe)."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Start one generation and stream its events (see the module docstring). A generator:
        the caller closes it (`aclose`) when it stops early."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a request and free its resources everywhere; idempotent, never raises."""


@dataclass
class FakeBackend(GenerationBackend):
    """Deterministic in-process backend for tests.

    Token i of a completion is `tokens[i % len(tokens)]`; when `eos_after` is set and `ignore_eos`
    is false, generation ends with "stop" after that many tokens. Failures are injected by setting
    `fail_admission` (raised before the first event) or `fail_after_tokens` (a `BackendError` after
    that many tokens). `token_delay_s` paces chunks so tests can disconnect mid-stream.
    """

    name: str = "fake-model"
    context_limit: int = 4096
    tokens: tuple[int, ...] = tuple(b"abc ")
    eos_after: int | None = None
    cached_tokens: int = 0
    token_delay_s: float = 0.0
    is_ready: bool = True
    fail_admission: BackendError | None = None
    fail_after_tokens: int | None = None
    requests: list[GenerationRequest] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        return self.name

    @property
    def max_context(self) -> int:
        return self.context_limit

    def ready(self) -> bool:
        return self.is_ready

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        if self.fail_admission is not None:
            raise self.fail_admission
        self.requests.append(request)
        sampling = request.sampling
        limit = sampling.max_tokens
        stop_at_eos = self.eos_after is not None and not sampling.ignore_eos
        if stop_at_eos and self.eos_after is not None:
            limit = min(limit, self.eos_after)
        for i in range(limit):
            if self.fail_after_tokens is not None and i == self.fail_after_tokens:
                raise BackendError("injected backend failure")
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            cached = self.cached_tokens if i == 0 else None
            yield TokenChunk((self.tokens[i % len(self.tokens)],), cached)
        stopped = stop_at_eos and limit < sampling.max_tokens
        reason = FinishReason.STOP if stopped else FinishReason.LENGTH
        usage = Usage(len(request.prompt_token_ids), limit, self.cached_tokens)
        yield GenerationFinished(reason, usage)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
