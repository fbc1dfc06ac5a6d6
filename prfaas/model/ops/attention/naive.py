"""Dense causal GQA attention, written out with an explicit score matrix: the test oracle."""

from __future__ import annotations

import torch
from torch import Tensor


def causal_attention_ref(q: Tensor, k: Tensor, v: Tensor, q_offset: int = 0) -> Tensor:
    """q: [T, Hq, d] at positions [q_offset, q_offset+T); k, v: [S, Hkv, d] at positions [0, S).

    Query i attends keys j <= q_offset + i. Returns [T, Hq, d] (computed in fp32, cast back).
    """
    T, Hq, d = q.shape
    group = Hq // k.shape[1]
    qf = q.float().transpose(0, 1)  # [Hq, T, d]
    kf = k.float().repeat_interleave(group, dim=1).transpose(0, 1)  # [Hq, S, d]
    vf = v.float().repeat_interleave(group, dim=1).transpose(0, 1)
    scores = qf @ kf.transpose(-1, -2) / d**0.5  # [Hq, T, S]
    pos_q = torch.arange(T, device=q.device)[:, None] + q_offset
    pos_k = torch.arange(k.shape[0], device=q.device)[None, :]
    scores = scores.masked_fill(pos_k > pos_q, float("-inf"))
    return (scores.softmax(-1) @ vf).transpose(0, 1).to(q.dtype)
