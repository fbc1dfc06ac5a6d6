"""Paged prefill and decode attention against the dense causal oracle."""

from __future__ import annotations

import torch

from prfaas.model.ops.attention import (
    causal_attention_ref,
    paged_decode_attention,
    prefill_attention,
    write_kv,
)


def _cache(num_blocks: int = 8, bs: int = 64, hkv: int = 2, d: int = 16) -> torch.Tensor:
    return torch.full((num_blocks, bs, 2, hkv, d), float("nan"))


def test_prefill_over_cache_with_offset_matches_dense() -> None:
    S, s, hq = 150, 70, 4
    q = torch.randn(S, hq, 16)
    k, v = torch.randn(S, 2, 16), torch.randn(S, 2, 16)
    kv = _cache()
    table = [5, 2, 7]
    write_kv(kv, table, 0, k, v)
    out = prefill_attention(q[s:], kv, table, s, tile=64)
    torch.testing.assert_close(
        out, causal_attention_ref(q[s:], k, v, q_offset=s), atol=1e-5, rtol=1e-4
    )


def test_batched_decode_different_lengths_matches_dense() -> None:
    kv = _cache(num_blocks=12)
    lengths = [1, 64, 130]
    tables = [[0], [3, 4], [8, 1, 6]]
    q = torch.randn(3, 4, 16)
    keys = []
    for L, table in zip(lengths, tables, strict=True):
        k, v = torch.randn(L, 2, 16), torch.randn(L, 2, 16)
        write_kv(kv, table, 0, k, v)
        keys.append((k, v))
    out = paged_decode_attention(q, kv, tables, lengths)
    for b, (k, v) in enumerate(keys):
        want = causal_attention_ref(q[b : b + 1], k, v, q_offset=lengths[b] - 1)[0]
        torch.testing.assert_close(out[b], want, atol=1e-5, rtol=1e-4)
