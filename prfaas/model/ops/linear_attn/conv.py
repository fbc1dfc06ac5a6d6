"""Short causal depthwise convolution (kernel K, default 4) with its pre-conv state.

The state is the last K-1 *inputs* (pre-conv, pre-SiLU projections) per channel, oldest first,
`[D, K-1]`; a prompt shorter than K-1 tokens keeps the older zeros/state in front, exactly as a
left-zero-padded prefill would. The SiLU is applied by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def causal_conv_prefill(
    x: Tensor, weight: Tensor, state: Tensor, checkpoint_positions: Sequence[int] = ()
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Convolve a run of T tokens that follows `state`.

    x: [T, D]; weight: [D, K]; state: [D, K-1]. Returns (y [T, D], new_state [D, K-1] (a fresh
    tensor), [state after p tokens, for p in checkpoint_positions] with 0 < p <= T).
    """
    T = x.shape[0]
    K = weight.shape[1]
    # [K-1+T, D]: the K-1 previous inputs then this run (row K-1+i holds token i)
    padded = torch.cat([state.t().to(x.dtype), x], dim=0)
    # K shifted multiply-adds; torch's depthwise conv1d is ~20x slower for this shape on CPU. The
    # taps are made contiguous rows [K, D] first: broadcasting a strided weight column is ~5x slower.
    taps = weight.t().contiguous()
    y = padded[0:T] * taps[0]
    for j in range(1, K):
        y.addcmul_(padded[j : j + T], taps[j])
    # Inputs before position p are rows p .. p+K-2.
    ckpts = [padded[p : p + K - 1].t().contiguous() for p in checkpoint_positions]
    return y, padded[T : T + K - 1].t().contiguous(), ckpts


def causal_conv_update(x: Tensor, weight: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One token per request. x: [B, D]; weight: [D, K]; state: [B, D, K-1] (not modified).

    Returns (y [B, D], new_state [B, D, K-1]).
    """
    window = torch.cat([state.to(x.dtype), x.unsqueeze(-1)], dim=-1)
    y = (window * weight).sum(dim=-1)
    return y, window[..., 1:].contiguous()
