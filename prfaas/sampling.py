"""What a request asks of generation and when generation ends: the one owner of sampling
parameters, stop rules and finish reasons, torch-free.

The engine's scheduler (`Request.stop_status`), the torch sampler (`prfaas.model.sampler`), the
worker's wire conversion and the emulated backend all use these, so a worker that runs the
emulated backend never imports torch. temperature 0 means greedy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


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


def check_stop(
    output_ids: Sequence[int], params: SamplingParams, eos_id: int | None
) -> FinishReason | None:
    """Why generation ends after `output_ids` (all generated tokens so far), or None to go on.
    `eos_id` None: no end-of-sequence token (the emulated backend has none)."""
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
