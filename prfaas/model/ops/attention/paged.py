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


def prefill_attention(
    q: Tensor, kv: Tensor, block_table: list[int], start: int, *, tile: int
) -> Tensor:
    """Causal GQA attention of queries at positions [start, start+T) over keys [0, start+T).

    q: [T, Hq, d] (RoPE applied). The run's own K/V must already be in the cache. Queries are
    processed in tiles on the absolute grid of `tile` tokens (a divisor of the block size), so a
    prefill split at a block boundary computes every tile exactly as a one-shot prefill does.
    Returns [T, Hq, d].
    """
    T = q.shape[0]
    end = start + T
    k_all, v_all = gather_kv(kv, block_table, end)
    # [1, H, S, d] views for SDPA
    k_all = k_all.transpose(0, 1).unsqueeze(0)
    v_all = v_all.transpose(0, 1).unsqueeze(0)
    out = torch.empty_like(q)
    pos = start
    while pos < end:
        stop = min((pos // tile + 1) * tile, end)
        qt = q[pos - start : stop - start].transpose(0, 1).unsqueeze(0)
        # Query at absolute position p sees keys j <= p.
        qpos = torch.arange(pos, stop, device=q.device)[:, None]
        mask = torch.arange(stop, device=q.device)[None, :] <= qpos
        o = F.scaled_dot_product_attention(
            qt, k_all[:, :, :stop], v_all[:, :, :stop], attn_mask=mask, enable_gqa=True
        )
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
