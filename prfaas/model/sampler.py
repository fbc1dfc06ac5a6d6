"""Token sampling with torch, per request.

The parameters, stop rules and finish reasons are `prfaas.sampling`'s (torch-free). temperature 0
means greedy; a request with a seed gets its own `torch.Generator`, so its samples do not depend on
what else is batched.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prfaas.sampling import SamplingParams


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
