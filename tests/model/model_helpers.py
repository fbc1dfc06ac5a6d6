"""Helpers shared by the model tests (imported by basename; pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch
from torch import Tensor

from prfaas.model import HybridCache, HybridModel, SeqCache


def make_cache(
    model: HybridModel, num_blocks: int = 16, num_slots: int = 4, block_size: int = 64
) -> HybridCache:
    # NaN fill: reading any block or slot the model did not write poisons the logits.
    return HybridCache(
        model.config, num_blocks, num_slots, block_size=block_size, fill=float("nan")
    )


def new_seq(cache: HybridCache, first_block: int, capacity: int, slot: int) -> SeqCache:
    """A fresh request owning consecutive blocks that cover `capacity` tokens."""
    n = cache.blocks_needed(capacity)
    return SeqCache(list(range(first_block, first_block + n)), slot, 0)


def finite(model: HybridModel, logits: Tensor) -> Tensor:
    """Only the generable ids (the rest are -inf by design)."""
    return logits[..., model.logit_mask == 0]


def prompt(n: int, seed: int = 0) -> Tensor:
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed))


def confident_argmax(logits: Tensor, margin: float) -> int | None:
    """argmax of [V] logits when the top-1 leads the top-2 by more than `margin`, else None."""
    top = torch.topk(logits, 2).values
    return int(logits.argmax()) if float(top[0] - top[1]) > margin else None
