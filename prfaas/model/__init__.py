"""Hybrid-attention model (Gated DeltaNet + GQA full attention), its cache tensors and byte layout,
naive oracles, byte-level tokenizer, sampler and safetensors checkpoints.

Entry points for other packages: `HybridConfig`/`get_preset`, `HybridModel.prefill`/`decode`,
`HybridCache`/`SeqCache`, `prfaas.model.layout`, `prfaas.model.sampler`, `prfaas.model.tokenizer`.
"""

from prfaas.model.cache import HybridCache, SeqCache
from prfaas.model.config import BOS_ID, EOS_ID, PAD_ID, HybridConfig, get_preset
from prfaas.model.hybrid import ContextLengthError, HybridModel

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
