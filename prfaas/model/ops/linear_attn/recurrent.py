"""One decode step of the gated delta rule for a batch of requests (fp32 state)."""

from __future__ import annotations

from torch import Tensor


def recurrent_gated_delta_rule_step(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """Apply one token per request.

    q, k: [B, H, d_k]; v: [B, H, d_v]; beta, g: [B, H]; state: [B, H, d_k, d_v] (not modified).
    Returns (o [B, H, d_v], new_state [B, H, d_k, d_v]). Same order as the naive definition:
    decay, predict, delta-correct, rank-1 write, read out.
    """
    S = state * g.exp()[..., None, None]
    # [B, H, 1, d_k] @ [B, H, d_k, d_v] -> [B, H, d_v]
    r = (k.unsqueeze(-2) @ S).squeeze(-2)
    u = beta.unsqueeze(-1) * (v - r)
    S = S + k.unsqueeze(-1) * u.unsqueeze(-2)
    o = (q.unsqueeze(-2) @ S).squeeze(-2)
    return o, S
