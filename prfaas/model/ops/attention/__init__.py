"""Full-attention ops: dense causal oracle, prefill over the paged cache, batched paged decode."""

from prfaas.model.ops.attention.naive import causal_attention_ref
from prfaas.model.ops.attention.paged import (
    gather_kv,
    paged_decode_attention,
    prefill_attention,
    write_kv,
)

__all__ = [
    "causal_attention_ref",
    "gather_kv",
    "paged_decode_attention",
    "prefill_attention",
    "write_kv",
]
