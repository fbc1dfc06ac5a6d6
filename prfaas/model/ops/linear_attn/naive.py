"""Definitions (test oracles) of the gated delta rule and the short causal conv, token by token.

These loops are the specification the fast paths (chunk.py, recurrent.py, conv.py) are tested
against; they are slow on purpose and never used in serving.
"""

from __future__ import annotations

import torch
from torch import Tensor


def recurrent_gated_delta_rule_ref(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor, initial_state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Run the gated delta rule one token at a time (docs/hybrid-model.md §2.2).

    q, k: [T, H, d_k] (q already scaled, both L2-normalised by the caller); v: [T, H, d_v];
    beta: [T, H] in (0, 1); g: [T, H] log-decay <= 0; initial_state: [H, d_k, d_v] or None (zeros).
    Returns (o [T, H, d_v], final_state [H, d_k, d_v]) in the inputs' dtype (use fp32 or fp64).
    Order matters: decay first, then the delta correction against the decayed state.
    """
    T, H, d_k = k.shape
    d_v = v.shape[-1]
    S = (
        torch.zeros(H, d_k, d_v, dtype=v.dtype, device=v.device)
        if initial_state is None
        else initial_state.clone()
    )
    o = torch.empty(T, H, d_v, dtype=v.dtype, device=v.device)
    for t in range(T):
        S = S * g[t].exp()[:, None, None]
        # What the memory predicts for k_t: [H, d_v]
        r = torch.einsum("hkv,hk->hv", S, k[t])
        u = beta[t][:, None] * (v[t] - r)
        S = S + k[t][:, :, None] * u[:, None, :]
        o[t] = torch.einsum("hkv,hk->hv", S, q[t])
    return o, S


def causal_conv_ref(
    x: Tensor, weight: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Depthwise causal conv, one output at a time, without the SiLU.

    x: [T, D] pre-conv inputs; weight: [D, K]; state: [D, K-1] (the K-1 inputs before x, oldest
    first) or None for zeros. Returns (y [T, D], new_state [D, K-1]).
    """
    D, K = weight.shape
    window = (
        torch.zeros(D, K - 1, dtype=x.dtype, device=x.device) if state is None else state.clone()
    )
    y = torch.empty_like(x)
    for t in range(x.shape[0]):
        full = torch.cat([window, x[t][:, None]], dim=1)
        y[t] = (full * weight).sum(dim=1)
        window = full[:, 1:]
    return y, window
