"""Oracle forward pass built only from the naive ops: no cache, no chunking, no paging.

`naive_forward` recomputes the whole sequence with the token-by-token gated delta rule, the
token-by-token conv and dense causal attention; the fast prefill/decode paths are tested against it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prfaas.model.hybrid import HybridModel


@torch.no_grad()
def naive_forward(model: HybridModel, tokens: Tensor) -> Tensor:
    """tokens [T] -> fp32 logits [T, V] for every position, from an empty state."""
    x = model.embed(tokens.to(model.device))
    for block in model.blocks:
        x = x + block.mixer.reference(block.mixer_norm(x))
        x = x + block.mlp(block.mlp_norm(x))
    return model._logits(x)


@torch.no_grad()
def reference_generate(model: HybridModel, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation by recomputing the full sequence each step (slow; tests only)."""
    seq = list(prompt)
    for _ in range(max_new_tokens):
        logits = naive_forward(model, torch.tensor(seq))
        seq.append(int(logits[-1].argmax()))
    return seq[len(prompt) :]
