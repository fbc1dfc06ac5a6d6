"""Token sampling and stop conditions, per request.

`SamplingParams` is the one definition the engine reuses. temperature 0 means greedy; a request
with a seed gets its own `torch.Generator`, so its samples do not depend on what else is batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor

from prfaas.model.config import EOS_ID


@dataclass(frozen=True)
class SamplingParams:
    # 0 = greedy (argmax); otherwise logits are divided by it before softmax.
    temperature: float = 1.0
    # Nucleus: keep the smallest set of top tokens whose probability reaches top_p (1.0 = off).
    top_p: float = 1.0
    # Keep only the k most likely tokens (0 = off).
    top_k: int = 0
    # Per-request seed; None = draw from the process-wide torch RNG.
    seed: int | None = None
    # Generated tokens at most (the first token sampled by prefill counts).
    max_tokens: int = 16
    # Keep generating after EOS (benchmarks).
    ignore_eos: bool = False
    # Any of these ids ends generation (the id is kept in the output).
    stop_token_ids: tuple[int, ...] = ()
    # Multi-token stop sequences: generation ends when the output ends with one of them.
    stop_sequences: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        # `nan < 0` is False: without the finiteness check a NaN temperature passed and then
        # failed every batch it was sampled in.
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError("temperature must be a finite number >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0 or self.max_tokens < 1:
            raise ValueError("top_k must be >= 0 and max_tokens >= 1")


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"


def make_generator(
    params: SamplingParams, device: torch.device | str = "cpu"
) -> torch.Generator | None:
    """A seeded generator for a request with a seed (create once per request, reuse each step)."""
    if params.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(params.seed)


def filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """logits [V] (already temperature-scaled) -> a copy with tokens outside top-k/top-p at -inf."""
    out = logits.clone()
    if 0 < top_k < out.shape[-1]:
        kth = torch.topk(out, top_k).values[-1]
        out[out < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass strictly before it already reaches top_p (the top one stays).
        before = probs.cumsum(-1) - probs
        drop = before >= top_p
        out[order[drop]] = float("-inf")
    return out


def sample_one(
    logits: Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> int:
    """Pick one token id from fp32 logits [V]."""
    if params.temperature == 0:
        return int(logits.argmax())
    filtered = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p)
    probs = filtered.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def sample(
    logits: Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[int]:
    """One token per row of logits [B, V]; row b uses params[b] and generators[b]."""
    return [sample_one(logits[b], params[b], generators[b]) for b in range(logits.shape[0])]


def check_stop(
    output_ids: list[int], params: SamplingParams, eos_id: int = EOS_ID
) -> FinishReason | None:
    """Why generation ends after `output_ids` (all generated tokens so far), or None to go on."""
    if output_ids:
        last = output_ids[-1]
        if (last == eos_id and not params.ignore_eos) or last in params.stop_token_ids:
            return FinishReason.STOP
        for stop in params.stop_sequences:
            if stop and tuple(output_ids[-len(stop) :]) == tuple(stop):
                return FinishReason.STOP
    if len(output_ids) >= params.max_tokens:
        return FinishReason.LENGTH
    return None
