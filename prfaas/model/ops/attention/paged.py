"""Attention over the paged KV cache: prefill of a query run, and batched one-token decode.

Cache layout (one full-attention layer): kv `[num_blocks, block_size, 2, n_kv_heads, head_dim]`;
token t of a request lives at kv[block_table[t // block_size], t % block_size]; index 0/1 on the
third axis is K/V. Keys are written into the cache first and read back from it, so every path sees
exactly the stored bytes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def write_kv(kv: Tensor, block_table: list[int], start: int, k: Tensor, v: Tensor) -> None:
    """Store k, v `[T, Hkv, d]` for positions [start, start+T) of one request."""
    bs = kv.shape[1]
    T = k.shape[0]
    t = 0
    while t < T:
        pos = start + t
        block, off = block_table[pos // bs], pos % bs
        n = min(bs - off, T - t)
        kv[block, off : off + n, 0] = k[t : t + n]
        kv[block, off : off + n, 1] = v[t : t + n]
        t += n


def gather_kv(kv: Tensor, block_table: list[int], length: int) -> tuple[Tensor, Tensor]:
    """K and V of positions [0, length) of one request, each `[length, Hkv, d]`.

    A view when the request's blocks are consecutive (no copy), otherwise a gathered copy.
    """
    bs = kv.shape[1]
    n_blocks = -(-length // bs)
    first = block_table[0]
    if block_table[:n_blocks] == list(range(first, first + n_blocks)):
        flat = kv[first : first + n_blocks].flatten(0, 1)[:length]
    else:
        idx = torch.tensor(block_table[:n_blocks], dtype=torch.long, device=kv.device)
        flat = kv.index_select(0, idx).flatten(0, 1)[:length]
    return flat[:, 0], flat[:, 1]


def _flash(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """[1, H, Lq, d] x [1, H, Lk, d] -> (out [1, H, Lq, d], logsumexp [1, H, Lq]). torch's CPU
    flash kernel; `is_causal` aligns query i with key i (top left), so use it on square tiles only."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)[:2]
    return out, lse


def prefill_attention(
    q: Tensor, kv: Tensor, block_table: list[int], start: int, *, tile: int
) -> Tensor:
    """Causal GQA attention of queries at positions [start, start+T) over keys [0, start+T).

    q: [T, Hq, d] (RoPE applied). The run's own K/V must already be in the cache. Queries are
    processed in tiles on the absolute grid of `tile` tokens (a divisor of the block size), so a
    prefill split at a block boundary computes every tile exactly as a one-shot prefill does.
    Each tile [pos, stop) is two mask-free flash calls merged by log-sum-exp: the past keys
    [0, pos) unmasked, and the square diagonal tile with `is_causal` (a boolean mask costs ~20%).
    Returns [T, Hq, d].
    """
    T, Hq, d = q.shape
    end = start + T
    k_all, v_all = gather_kv(kv, block_table, end)
    Hkv = k_all.shape[1]
    group = Hq // Hkv
    # [1, Hkv, S, d] views of the cache for the past part, where the `group` query heads of one kv
    # head are stacked along the query axis (no mask there, so rows are independent).
    k_past = k_all.transpose(0, 1).unsqueeze(0)
    v_past = v_all.transpose(0, 1).unsqueeze(0)
    out = torch.empty_like(q)
    pos = start
    while pos < end:
        stop = min((pos // tile + 1) * tile, end)
        n = stop - pos
        qt = q[pos - start : stop - start].transpose(0, 1).unsqueeze(0)  # [1, Hq, n, d]
        # Diagonal tile: keys [pos, stop), causal; kv heads repeated to Hq (small: n rows).
        kd = k_past[:, :, pos:stop].repeat_interleave(group, dim=1)
        vd = v_past[:, :, pos:stop].repeat_interleave(group, dim=1)
        o, lse = _flash(qt, kd, vd, causal=True)
        if pos > 0:
            qp = qt.reshape(1, Hkv, group * n, d)
            op, lp = _flash(qp, k_past[:, :, :pos], v_past[:, :, :pos], causal=False)
            op, lp = op.reshape(1, Hq, n, d), lp.reshape(1, Hq, n)
            # softmax over the union = weighted sum of the two partial softmaxes
            lse_all = torch.logaddexp(lse, lp)
            o = o.mul_((lse - lse_all).exp_().unsqueeze(-1))
            o.addcmul_(op, (lp - lse_all).exp_().unsqueeze(-1))
        out[pos - start : stop - start] = o.squeeze(0).transpose(0, 1)
        pos = stop
    return out


def paged_decode_attention(
    q: Tensor, kv: Tensor, block_tables: list[list[int]], lengths: list[int]
) -> Tensor:
    """One query per request over its first `lengths[b]` keys (its new token included).

    q: [B, Hq, d]. Each request attends over exactly its own keys (a view of the cache when its
    blocks are consecutive), so stale bytes past a request's length are never read and no buffer
    grows per step. Returns [B, Hq, d].
    """
    out = torch.empty_like(q)
    for b, (table, length) in enumerate(zip(block_tables, lengths, strict=True)):
        k, v = gather_kv(kv, table, length)
        # [1, H, 1, d] query against [1, Hkv, L, d] keys
        o = F.scaled_dot_product_attention(
            q[b][None, :, None, :],
            k.transpose(0, 1).unsqueeze(0),
            v.transpose(0, 1).unsqueeze(0),
            enable_gqa=True,
        )
        out[b] = o[0, :, 0]
    return out
