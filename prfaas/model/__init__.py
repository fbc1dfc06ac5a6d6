"""Hybrid-attention model (Gated DeltaNet + GQA full attention), its cache tensors and byte layout,
naive oracles, byte-level tokenizer, sampler and safetensors checkpoints.

Entry points for other packages: `HybridConfig`/`get_preset`, `HybridModel.prefill`/`decode`,
`HybridCache`/`SeqCache`, `prfaas.model.layout`, `prfaas.model.sampler`. The tokenizer is its own
torch-free package (`prfaas.tokenizer`).
"""

from __future__ import annotations

import importlib
from typing import Any

from prfaas.tokenizer.special_tokens import BOS_ID, EOS_ID, PAD_ID

# Torch-backed names load on first use (PEP 562), so `prfaas.model.config` stays torch-free.
_LAZY = {
    "HybridCache": "prfaas.model.cache",
    "SeqCache": "prfaas.model.cache",
    "HybridConfig": "prfaas.model.config",
    "get_preset": "prfaas.model.config",
    "ContextLengthError": "prfaas.model.hybrid",
    "HybridModel": "prfaas.model.hybrid",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prfaas.model' has no attribute {name!r}")


__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "ContextLengthError",
    "HybridCache",
    "HybridConfig",
    "HybridModel",
    "SeqCache",
    "get_preset",
]
