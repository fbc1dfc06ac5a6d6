"""`DecodeBatch`: the cache addresses of one decode step, built once and shared by every layer.

The engine hands `HybridModel.decode` a list of `SeqCache`s; turning their Python lists into
tensors per layer cost more than some layers' math. Built here once per step:
- positions [B] int64: where each new token goes (its RoPE position).
- slots [B] int64: each request's row in the linear-state tensors.
- kv_rows [B] int64: the new token's row in a full layer's cache viewed as
  [num_blocks * block_size, 2, n_kv_heads, head_dim] (block * block_size + offset).
- tables [B, W] int64 (block ids, zero-padded to the longest table) and lengths [B] int64
  (keys each request attends over, its new token included), for the native attention kernel;
  table_lists / length_list are the same addresses for the torch path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prfaas.model.cache import SeqCache


@dataclass(frozen=True)
class DecodeBatch:
    positions: Tensor
    slots: Tensor
    kv_rows: Tensor
    tables: Tensor
    lengths: Tensor
    table_lists: list[list[int]]
    length_list: list[int]

    @classmethod
    def build(
        cls, seqs: list[SeqCache], block_size: int, device: torch.device, *, has_kv: bool = True
    ) -> DecodeBatch:
        """Addresses of one step; `has_kv=False` (no full-attention layer) skips block tables."""
        positions = [s.num_tokens for s in seqs]
        table_lists = [s.block_table for s in seqs] if has_kv else [[] for _ in seqs]
        rows = [t[p // block_size] * block_size + p % block_size if has_kv else 0
                for t, p in zip(table_lists, positions, strict=True)]  # fmt: skip
        width = max((len(t) for t in table_lists), default=0)
        padded = [t + [0] * (width - len(t)) for t in table_lists]

        def i64(values: list) -> Tensor:
            return torch.tensor(values, dtype=torch.int64, device=device)

        return cls(
            positions=i64(positions),
            slots=i64([s.state_slot for s in seqs]),
            kv_rows=i64(rows),
            tables=i64(padded).reshape(len(seqs), width),
            lengths=i64([p + 1 for p in positions]),
            table_lists=table_lists,
            length_list=[p + 1 for p in positions],
        )
