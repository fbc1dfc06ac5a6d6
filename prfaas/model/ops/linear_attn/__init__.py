"""Gated DeltaNet core ops: naive oracle, chunkwise prefill, one-step decode, short conv."""

from prfaas.model.ops.linear_attn.chunk import chunk_gated_delta_rule
from prfaas.model.ops.linear_attn.conv import causal_conv_prefill, causal_conv_update
from prfaas.model.ops.linear_attn.naive import causal_conv_ref, recurrent_gated_delta_rule_ref
from prfaas.model.ops.linear_attn.recurrent import recurrent_gated_delta_rule_step

__all__ = [
    "causal_conv_prefill",
    "causal_conv_ref",
    "causal_conv_update",
    "chunk_gated_delta_rule",
    "recurrent_gated_delta_rule_ref",
    "recurrent_gated_delta_rule_step",
]
