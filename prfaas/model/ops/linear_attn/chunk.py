"""Chunkwise-parallel gated delta rule for prefill (docs/hybrid-model.md §2.3, WY/UT transform).

Inside a chunk of C tokens everything is batched matmuls plus one unit-lower-triangular solve; only
the loop over chunks carrying the state S is sequential. Chunks sit on an *absolute* grid: a run that
starts at position `start_pos` is front-padded to a multiple of C with g = 0, beta = 0, k = q = v = 0
tokens, which neither decay nor write the state. A prefill split at a multiple of C therefore walks
the same chunks as a one-shot prefill, and the state at every multiple of C is available for prefix
cache checkpoints.

Chunks are processed in slabs of SLAB_CHUNKS: every per-chunk temporary ([H, n, C, C] decays etc.)
then stays cache-sized instead of O(T) fresh memory. All batched ops act per chunk, so a chunk's
result does not depend on which slab (or which prefill split) it was computed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

SLAB_CHUNKS = 16


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
    checkpoint_positions: Sequence[int] = (),
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Gated delta rule over T tokens at absolute positions [start_pos, start_pos+T).

    q, k: [T, H, d_k] (L2-normalised, q scaled); v: [T, H, d_v]; beta, g: [T, H];
    initial_state: [H, d_k, d_v] (state after start_pos tokens; not modified).
    checkpoint_positions: absolute positions p in (start_pos, start_pos+T], each a multiple of
    chunk_size, at which to return a copy of the state (the state after p tokens).
    Returns (o [T, H, d_v], final_state [H, d_k, d_v], [state at p for p in checkpoint_positions]).
    Works in the inputs' dtype (fp32 in the model; fp64 in tight oracle tests).
    """
    T, H, _ = k.shape
    C = chunk_size
    front = start_pos % C
    n = -(-(front + T) // C)
    wanted: dict[int, list[int]] = {}
    for i, p in enumerate(checkpoint_positions):
        if p % C or not start_pos < p <= start_pos + T:
            raise ValueError(f"checkpoint position {p} is not a chunk end inside this run")
        wanted.setdefault((p - start_pos + front) // C - 1, []).append(i)
    ckpts: dict[int, Tensor] = {}  # index into checkpoint_positions -> state copy
    o = torch.empty(T, H, v.shape[-1], dtype=q.dtype, device=q.device)
    S = initial_state.to(q.dtype).clone()
    for c0 in range(0, n, SLAB_CHUNKS):
        c1 = min(c0 + SLAB_CHUNKS, n)
        # Run rows [t0, t1) of chunks c0..c1-1; only the first slab has front padding.
        t0, t1 = max(0, c0 * C - front), min(T, c1 * C - front)
        pad = front if c0 == 0 else 0
        xs = (q[t0:t1], k[t0:t1], v[t0:t1], beta[t0:t1], g[t0:t1])
        o_slab, S, states = _slab(*xs, S, C, pad, c1 - c0)
        o[t0:t1] = o_slab
        for c, st in enumerate(states, start=c0):
            for i in wanted.get(c, ()):
                ckpts[i] = st
    return o, S, [ckpts[i] for i in range(len(checkpoint_positions))]


def _slab(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, g: Tensor, S: Tensor, C: int, front: int, n: int
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """n consecutive chunks; the rows are placed at offset `front` (zero padding around them).
    Returns (o [rows, H, d_v], state after the slab, [state after each chunk] (copies))."""
    T, H, d_k = k.shape
    d_v = v.shape[-1]
    dt, dev = q.dtype, q.device

    def to_chunks(x: Tensor, out: Tensor) -> Tensor:
        # [T, H, w] -> contiguous [H, n, C, w]; zero padding on the absolute chunk grid.
        out[:, :front] = 0
        out[:, front + T :] = 0
        out[:, front : front + T] = x.transpose(0, 1)
        return out.view(H, n, C, -1)

    def buf(width: int) -> Tensor:
        return torch.empty(H, n * C, width, dtype=dt, device=dev)

    q, k = to_chunks(q, buf(d_k)), to_chunks(k, buf(d_k))
    beta = to_chunks(beta.unsqueeze(-1), buf(1))  # [H, n, C, 1]
    gamma = to_chunks(g.unsqueeze(-1), buf(1)).cumsum_(-2)  # Γ within each chunk, [H, n, C, 1]
    # RHS of both triangular solves side by side: [β·k·exp(Γ) | β·v], [H, n, C, d_k + d_v].
    rhs = buf(d_k + d_v)
    to_chunks(v, rhs[..., d_k:])
    rhs = rhs.view(H, n, C, d_k + d_v)
    rhs[..., d_k:].mul_(beta)
    torch.mul(k, beta * gamma.exp(), out=rhs[..., :d_k])
    # Decay D_ij = exp(Γ_i − Γ_j) for j <= i (docs/hybrid-model.md §2.6: never factor it). For j > i the
    # difference is >= 0; clamping it to 0 keeps exp finite and the causal mask then zeroes it.
    causal = torch.ones(C, C, dtype=dt, device=dev).tril_()
    decay = (gamma - gamma.transpose(-1, -2)).clamp_(max=0.0).exp_().mul_(causal)  # [H, n, C, C]
    # A_ij = β_i (k_i·k_j) D_ij; the unit-triangular solve reads only the strict lower triangle,
    # so the diagonal and upper parts of A need no masking.
    A = torch.matmul(k, k.transpose(-1, -2)).mul_(decay).mul_(beta)
    WU = torch.linalg.solve_triangular(A, rhs, upper=False, unitriangular=True)
    W, U = WU[..., :d_k], WU[..., d_k:]  # [H, n, C, d_k], [H, n, C, d_v]
    last = gamma[:, :, -1:]  # [H, n, 1, 1]
    # Keys decayed to the chunk end, pre-transposed for the state update: [H, n, d_k, C].
    k_to_end_t = (k * (last - gamma).exp()).transpose(-1, -2).contiguous()
    chunk_decay = last.exp()  # [H, n, 1, 1]

    # Sequential part: only the state recurrence. V' = U − W·S; S ← exp(Γ_C)·S + (K ⊙ ...)ᵀ·V'.
    # S_in[:, c] keeps the state entering chunk c, so outputs are batched after the loop.
    S_in = torch.empty(H, n, d_k, d_v, dtype=dt, device=dev)
    v_new = torch.empty(H, n, C, d_v, dtype=dt, device=dev)
    states = []
    for c in range(n):
        S_in[:, c] = S
        torch.baddbmm(U[:, c], W[:, c], S, alpha=-1.0, out=v_new[:, c])
        S = torch.baddbmm(S * chunk_decay[:, c], k_to_end_t[:, c], v_new[:, c])
        states.append(S)
    # O = (Q ⊙ exp(Γ))·S_in + [(Q Kᵀ) ⊙ D]·V', all chunks at once: [H, n, C, d_v].
    qk = torch.matmul(q, k.transpose(-1, -2)).mul_(decay)
    o = torch.matmul(q.mul_(gamma.exp()), S_in)
    o.view(H * n, C, d_v).baddbmm_(qk.view(H * n, C, C), v_new.view(H * n, C, d_v))
    o = o.view(H, n * C, d_v)[:, front : front + T].transpose(0, 1)
    return o, S, states
