"""One HTTP generation: backend events in, text deltas out, with stop strings and timing.

`TextGeneration` is what both the streaming and the non-streaming endpoints consume. It decodes
token ids incrementally, cuts the text at the first stop string, records the request's latency
and token statistics, and guarantees that a generation which does not run to its natural end
(stop string, client gone, error) is aborted in the backend exactly once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import anyio

from prfaas.metrics import RequestStats, RouterMetrics
from prfaas.router.generation_backend import (
    BackendError,
    ContextTooLong,
    GenerationBackend,
    GenerationFinished,
    GenerationRequest,
    NotReady,
    Overloaded,
    TokenChunk,
)
from prfaas.router.openai_text import StopStringMatcher, Tokenizer
from prfaas.sampling import FinishReason


@dataclass(frozen=True)
class TextDelta:
    """New text for the client (possibly empty while a stop string might be forming)."""

    text: str
    num_completion_tokens: int
    """Completion tokens generated so far (for continuous usage stats)."""


@dataclass(frozen=True)
class TextFinished:
    """Last item of a generation."""

    finish_reason: FinishReason
    stop_reason: str | None
    """The stop string that ended the text, if any."""
    num_prompt_tokens: int
    num_completion_tokens: int
    num_cached_tokens: int
    prefill_cluster: str = ""
    """Where the prompt was prefilled (the backend's usage), "" when unknown."""


class TextGeneration:
    """Drives one `backend.generate` call; iterate `events()` once."""

    def __init__(
        self,
        backend: GenerationBackend,
        tokenizer: Tokenizer,
        request: GenerationRequest,
        metrics: RouterMetrics,
        arrival_s: float,
    ) -> None:
        self._backend = backend
        self._tokenizer = tokenizer
        self._request = request
        self._metrics = metrics
        self._arrival_s = arrival_s
        self._stop = StopStringMatcher(request.stop_strings)
        self._decoder = tokenizer.stream_decoder()
        self._num_tokens = 0
        self._num_cached = 0
        self._prefill_cluster = ""
        self._first_token_s: float | None = None
        self._last_token_s = arrival_s
        self._itl_s: list[float] = []

    async def events(self) -> AsyncGenerator[TextDelta | TextFinished, None]:
        """Yield text deltas and then one `TextFinished`.

        Backend errors propagate to the caller. Closing or cancelling the iterator early aborts
        the request in the backend.
        """
        reason = "abort"
        backend_done = False
        stream = self._backend.generate(self._request)
        try:
            async for event in stream:
                if isinstance(event, TokenChunk):
                    delta = self._on_tokens(event)
                    yield delta
                    if self._stop.matched is not None:
                        reason = FinishReason.STOP
                        yield self._finished(FinishReason.STOP)
                        return
                elif isinstance(event, GenerationFinished):
                    backend_done = True
                    self._num_cached = event.usage.cached_tokens
                    self._prefill_cluster = event.usage.prefill_cluster
                    tail = self._stop.feed(self._decoder.flush())
                    if self._stop.matched is None:
                        tail += self._stop.flush()
                    reason = (
                        FinishReason.STOP if self._stop.matched is not None else event.finish_reason
                    )
                    yield TextDelta(tail, self._num_tokens)
                    yield self._finished(reason)
                    return
            raise BackendError("backend ended the stream without a finish event")
        except (Overloaded, NotReady, ContextTooLong):
            # Rejected at admission: nothing was started, so nothing to abort or record.
            reason = "rejected"
            raise
        except BackendError:
            reason = "error"
            raise
        finally:
            await stream.aclose()
            if not backend_done and reason != "rejected":
                # Shielded: this also runs while the request's task is being cancelled.
                with anyio.CancelScope(shield=True):
                    await self._backend.abort(self._request.request_id)
            if reason != "rejected":
                self._record(reason)

    def _on_tokens(self, chunk: TokenChunk) -> TextDelta:
        now = time.monotonic()
        if chunk.cached_tokens is not None:
            self._num_cached = chunk.cached_tokens
        ids = [i for i in chunk.token_ids if i != self._tokenizer.eos_token_id]
        if self._first_token_s is None:
            self._first_token_s = now
            gaps = [0.0] * (len(chunk.token_ids) - 1)
        else:
            gaps = [(now - self._last_token_s) / len(chunk.token_ids)] * len(chunk.token_ids)
        self._itl_s.extend(gaps)
        self._last_token_s = now
        self._num_tokens += len(chunk.token_ids)
        return TextDelta(self._stop.feed(self._decoder.push(ids)), self._num_tokens)

    def _finished(self, reason: FinishReason) -> TextFinished:
        return TextFinished(
            finish_reason=reason,
            stop_reason=self._stop.matched,
            num_prompt_tokens=len(self._request.prompt_token_ids),
            num_completion_tokens=self._num_tokens,
            num_cached_tokens=self._num_cached,
            prefill_cluster=self._prefill_cluster,
        )

    def _record(self, finished_reason: str) -> None:
        first = self._first_token_s
        stats = RequestStats(
            finished_reason=finished_reason,
            e2e_s=time.monotonic() - self._arrival_s,
            ttft_s=None if first is None else first - self._arrival_s,
            itl_s=self._itl_s,
            num_prompt_tokens=len(self._request.prompt_token_ids),
            num_generation_tokens=self._num_tokens,
            num_cached_tokens=self._num_cached,
        )
        self._metrics.record_request(stats)
