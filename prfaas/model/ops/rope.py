"""Rotary position embedding (rotate-half form), optionally on the first `rotary_dim` dims only."""

from __future__ import annotations

import torch
from torch import Tensor


def apply_rope(x: Tensor, positions: Tensor, rotary_dim: int, theta: float) -> Tensor:
    """x: [N, H, d]; positions: [N] absolute token positions. Returns a new [N, H, d] tensor.

    Angles are computed in fp32 from the absolute position, so a token gets the same rotation in
    prefill, chunked prefill and decode.
    """
    half = rotary_dim // 2
    inv_freq = theta ** (-torch.arange(half, device=x.device, dtype=torch.float32) * 2 / rotary_dim)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [N, half]
    cos = angles.cos()[:, None, :]
    sin = angles.sin()[:, None, :]
    rot = x[..., :rotary_dim].float()
    x1, x2 = rot[..., :half], rot[..., half:]
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)
    if rotary_dim == x.shape[-1]:
        return out
    return torch.cat([out, x[..., rotary_dim:]], dim=-1)
