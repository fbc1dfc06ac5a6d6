"""Native (C, fp32, CPU) decode kernels: paged attention and the gated-delta state step.

Fast paths only; the torch ops in ops/attention and ops/linear_attn stay the oracles and the
fallback (other dtypes, CUDA, no compiler, PRFAAS_NATIVE_KERNELS=0).
"""

from prfaas.model.ops.native.kernels import (
    exp_nonpositive,
    gdn_decode_step_native,
    paged_decode_attention_native,
    sigmoid,
    usable,
)
from prfaas.model.ops.native.loader import library, load_error

__all__ = [
    "exp_nonpositive",
    "gdn_decode_step_native",
    "library",
    "load_error",
    "paged_decode_attention_native",
    "sigmoid",
    "usable",
]
