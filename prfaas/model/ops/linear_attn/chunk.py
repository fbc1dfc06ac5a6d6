"""Chunkwise-parallel gated delta rule for prefill (hybrid_model.md §2.3, WY/UT transform).

Inside a chunk of C tokens everything is batched matmuls plus one unit-lower-triangular solve; only
the loop over chunks carrying the state S is sequential. Chunks sit on an *absolute* grid: a run that
starts at position `start_pos` is front-padded to a multiple of C with g = 0, beta = 0, k = q = v = 0
tokens, which neither decay nor write the state. A prefill split at a multiple of C therefore walks
the same chunks as a one-shot prefill, and the state at every multiple of C is available for prefix
cache checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def chunk_gated_delta_rule(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor,
    initial_state: Tensor,
    *,
    chunk_size: int = 64,
    start_pos: int = 0,
    checkpoint_positions: list[int] = (),
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Gated delta rule over T tokens at absolute positions [start_pos, start_pos+T).

    q, k: [T, H, d_k] (L2-normalised, q scaled); v: [T, H, d_v]; beta, g: [T, H];
    initial_state: [H, d_k, d_v] (state after start_pos tokens; not modified).
    checkpoint_positions: absolute positions p in (start_pos, start_pos+T], each a multiple of
    chunk_size, at which to return a copy of the state (the state after p tokens).
    Returns (o [T, H, d_v], final_state [H, d_k, d_v], [state at p for p in checkpoint_positions]).
    Works in the inputs' dtype (fp32 in the model; fp64 in tight oracle tests).
    """
    T, H, d_k = k.shape
    d_v = v.shape[-1]
    C = chunk_size
    front = start_pos % C
    back = (-(front + T)) % C
    n = (front + T + back) // C
    wanted = {}
    for i, p in enumerate(checkpoint_positions):
        if p % C or not start_pos < p <= start_pos + T:
            raise ValueError(f"checkpoint position {p} is not a chunk end inside this run")
        wanted.setdefault((p - start_pos + front) // C - 1, []).append(i)

    def to_chunks(x: Tensor) -> Tensor:
        # [T, H, ...] -> [H, n, C, ...] with zero padding on the absolute chunk grid
        pad = [0, 0] * (x.dim() - 1) + [front, back]
        x = F.pad(x, pad)
        return x.reshape(n, C, *x.shape[1:]).movedim(2, 0)

    q, k, v = to_chunks(q), to_chunks(k), to_chunks(v)
    beta, g = to_chunks(beta), to_chunks(g)  # [H, n, C]
    gamma = g.cumsum(-1)
    # Decay D_ij = exp(Γ_i - Γ_j) for j <= i; mask with -inf *before* exp (no overflow).
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    diff = (gamma.unsqueeze(-1) - gamma.unsqueeze(-2)).masked_fill(~causal, float("-inf"))
    decay = diff.exp()  # [H, n, C, C]
    # (I + A) with A_ij = beta_i (k_i·k_j) D_ij for j < i; unit lower triangular.
    A = (beta.unsqueeze(-1) * (k @ k.transpose(-1, -2)) * decay).tril(-1)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    IA = A + eye
    W = torch.linalg.solve_triangular(
        IA, beta.unsqueeze(-1) * k * gamma.exp().unsqueeze(-1), upper=False, unitriangular=True
    )
    U = torch.linalg.solve_triangular(IA, beta.unsqueeze(-1) * v, upper=False, unitriangular=True)
    # Intra-chunk causal attention with decay, diagonal included: [H, n, C, C]
    qk = (q @ k.transpose(-1, -2)) * decay
    q_decayed = q * gamma.exp().unsqueeze(-1)
    last = gamma[..., -1:]  # [H, n, 1]
    k_to_end = k * (last - gamma).exp().unsqueeze(-1)
    chunk_decay = last.exp().unsqueeze(-1)  # [H, n, 1, 1]

    S = initial_state.to(q.dtype).clone()
    o = torch.empty(H, n, C, d_v, dtype=q.dtype, device=q.device)
    ckpts: list[Tensor | None] = [None] * len(checkpoint_positions)
    for c in range(n):
        # Corrected values: what is still new given what S already predicts. [H, C, d_v]
        v_new = U[:, c] - W[:, c] @ S
        o[:, c] = q_decayed[:, c] @ S + qk[:, c] @ v_new
        S = chunk_decay[:, c] * S + k_to_end[:, c].transpose(-1, -2) @ v_new
        for i in wanted.get(c, ()):
            ckpts[i] = S.clone()
    o = o.reshape(H, n * C, d_v)[:, front : front + T].transpose(0, 1)
    return o, S, ckpts  # type: ignore[return-value]
