"""What a generation request may carry, checked where it enters: one definition for every entry.

Used by the router's HTTP front end (`router/http_requests.py`), the router's gRPC `Generate`
(`router/service.py`) and the workers' gRPC entries (`worker/wire_inputs.py`), so a malformed request
is refused at the edge (HTTP 400, gRPC INVALID_ARGUMENT or an "invalid_argument" error event) and
never reaches an engine step, where one bad row would fail the whole batch.

The limits follow the wire (`proto/prfaas/v1/common.proto`): token ids, `top_k` and `max_tokens`
are int32, the seed is uint64, temperature and top_p are float32. Torch-free and proto-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

from prfaas.sampling import SamplingParams

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

GREEDY_TEMPERATURE = 1e-5
"""Temperatures below this sample greedily (as vLLM does): logits divided by a tiny temperature
overflow to inf and the softmax turns into NaN, which fails the whole engine step."""

MAX_OPENAI_TEMPERATURE = 2.0
"""OpenAI's upper bound on `temperature` (the HTTP front end enforces it; gRPC allows any finite)."""


class InvalidRequest(ValueError):
    """A client input outside what prfaas serves; `param` names the offending field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def check_token_ids(ids: Iterable[int], vocab_size: int, param: str) -> None:
    """Every id must be a row of the vocabulary: 0 <= id < vocab_size."""
    for position, token_id in enumerate(ids):
        if not 0 <= token_id < vocab_size:
            raise InvalidRequest(
                param,
                f"{param}[{position}] = {token_id} is not a token id: ids must be in "
                f"[0, {vocab_size}).",
            )


class SamplingValues(Protocol):
    """What is checked of a request's sampling: the fields of `prfaas.sampling.SamplingParams`."""

    @property
    def temperature(self) -> float: ...
    @property
    def top_p(self) -> float: ...
    @property
    def top_k(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def stop_token_ids(self) -> tuple[int, ...]: ...
    @property
    def stop_sequences(self) -> Sequence[Sequence[int]]: ...


def check_sampling(values: SamplingValues, vocab_size: int) -> None:
    """Sampling values the engine can run: finite, in range, stop ids in the vocabulary.

    `top_p` 0 is accepted as the wire's "unset"; `top_k` 0 or -1 disables top-k."""
    v = values
    _check_sampling_values(
        v.temperature,
        v.top_p,
        v.top_k,
        v.max_tokens,
        v.stop_token_ids,
        v.stop_sequences,
        vocab_size,
    )


def checked_sampling(
    vocab_size: int,
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    max_tokens: int,
    ignore_eos: bool = False,
    stop_token_ids: tuple[int, ...] = (),
    stop_sequences: tuple[tuple[int, ...], ...] = (),
) -> SamplingParams:
    """A client's sampling values, checked as `check_sampling` checks them (raises
    `InvalidRequest`), as the one `SamplingParams`. The "off" spellings `check_sampling` accepts
    become SamplingParams' own: `top_p` 0 -> 1.0, `top_k` -1 -> 0 (the wire means the same)."""
    _check_sampling_values(
        temperature, top_p, top_k, max_tokens, stop_token_ids, stop_sequences, vocab_size
    )
    return SamplingParams(
        temperature=temperature,
        top_p=top_p or 1.0,
        top_k=max(top_k, 0),
        seed=seed,
        max_tokens=max_tokens,
        ignore_eos=ignore_eos,
        stop_token_ids=stop_token_ids,
        stop_sequences=stop_sequences,
    )


def _check_sampling_values(
    temperature: float,
    top_p: float,
    top_k: int,
    max_tokens: int,
    stop_token_ids: Iterable[int],
    stop_sequences: Iterable[Sequence[int]],
    vocab_size: int,
) -> None:
    if not math.isfinite(temperature) or temperature < 0:
        raise InvalidRequest(
            "temperature", f"temperature must be finite and >= 0, got {temperature}."
        )
    if not math.isfinite(top_p) or not 0 <= top_p <= 1:
        raise InvalidRequest("top_p", f"top_p must be in (0, 1], got {top_p}.")
    if not -1 <= top_k <= INT32_MAX:
        raise InvalidRequest(
            "top_k", f"top_k must be -1, 0 (off) or a positive count, got {top_k}."
        )
    if not 1 <= max_tokens <= INT32_MAX:
        raise InvalidRequest(
            "max_tokens", f"max_tokens must be in [1, {INT32_MAX}], got {max_tokens}."
        )
    check_token_ids(stop_token_ids, vocab_size, "stop_token_ids")
    for stop in stop_sequences:
        check_token_ids(stop, vocab_size, "stop_token_ids")


def wire_seed(seed: int) -> int:
    """An OpenAI seed (int64, negatives allowed) as the wire's uint64, two's complement: distinct
    seeds stay distinct and the same seed always gives the same samples."""
    if not INT64_MIN <= seed <= INT64_MAX:
        raise InvalidRequest("seed", f"seed must be a 64-bit signed integer, got {seed}.")
    return seed & UINT64_MAX
