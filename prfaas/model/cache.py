"""Cache tensors of one process (`HybridCache`) and a request's address into them (`SeqCache`).

Ownership: `HybridCache` owns the tensors; the engine owns all bookkeeping (which blocks and slots
are free, reference counts, prefix hashes). Nothing here allocates or frees per request.

- full-attention layer i (model layer `config.full_layers[i]`):
  `kv[i]` `[num_blocks, block_size, 2, n_kv_heads, head_dim]` in the model dtype; the first n
  tokens of a block (their K and V) are one contiguous byte range.
- linear layer j (model layer `config.linear_layers[j]`):
  `recurrent[j]` `[num_slots, H_v, d_k, d_v]` fp32 and `conv[j]` `[num_slots, conv_dim, K-1]` fp32
  (the last K-1 pre-convolution inputs, oldest first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from prfaas.model.config import HybridConfig

# One (recurrent [H_v, d_k, d_v], conv [conv_dim, K-1]) pair per linear layer, in layer order.
LinearStates = list[tuple[Tensor, Tensor]]


@dataclass
class SeqCache:
    """Where one request's cache lives. The engine mutates it; the model only reads it.

    block_table: physical block ids; token t is in block_table[t // block_size].
    state_slot: row of every recurrent/conv tensor holding this request's linear state.
    num_tokens: tokens already in the cache (KV written and applied to the state).
    """

    block_table: list[int] = field(default_factory=list)
    state_slot: int = 0
    num_tokens: int = 0


class HybridCache:
    """Preallocated KV blocks and linear-state slots for one model in one process."""

    def __init__(
        self,
        config: HybridConfig,
        num_blocks: int,
        num_slots: int,
        *,
        block_size: int = 256,
        device: torch.device | str = "cpu",
        fill: float | None = None,
    ) -> None:
        """Allocate the tensors. `fill=None` leaves memory uninitialised (torch.empty); tests pass
        `fill=float("nan")` so any read of unwritten memory shows up as NaN."""
        if block_size % config.chunk_size:
            raise ValueError(f"block_size {block_size} is not a multiple of {config.chunk_size}")
        self.config = config
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.num_slots = num_slots
        self.device = torch.device(device)
        c = config

        def alloc(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
            t = torch.empty(shape, dtype=dtype, device=self.device)
            return t if fill is None else t.fill_(fill)

        kv_shape = (num_blocks, block_size, 2, c.n_kv_heads, c.head_dim)
        rec_shape = (num_slots, c.gdn_num_v_heads, c.gdn_head_k_dim, c.gdn_head_v_dim)
        conv_shape = (num_slots, c.conv_dim, c.conv_kernel - 1)
        self.kv: list[Tensor] = [alloc(kv_shape, c.torch_dtype) for _ in c.full_layers]
        self.recurrent: list[Tensor] = [alloc(rec_shape, torch.float32) for _ in c.linear_layers]
        self.conv: list[Tensor] = [alloc(conv_shape, torch.float32) for _ in c.linear_layers]
        self._ordinal = {layer: i for i, layer in enumerate(c.full_layers)}
        self._ordinal.update({layer: j for j, layer in enumerate(c.linear_layers)})

    def ordinal(self, layer_idx: int) -> int:
        """Index into `kv` (full layer) or `recurrent`/`conv` (linear layer) of a model layer."""
        return self._ordinal[layer_idx]

    def is_full(self, layer_idx: int) -> bool:
        return self.config.layer_pattern[layer_idx] == "F"

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def zero_state(self, slot: int) -> None:
        """Reset a slot to the empty state (what a fresh request starts from)."""
        for t in self.recurrent + self.conv:
            t[slot].zero_()

    def copy_state(self, src_slot: int, dst_slot: int) -> None:
        """Copy every linear layer's state from one slot to another (e.g. a prefix checkpoint)."""
        for t in self.recurrent + self.conv:
            t[dst_slot].copy_(t[src_slot])

    def read_state(self, slot: int) -> LinearStates:
        """A copy (never an alias) of the slot's states, one (recurrent, conv) per linear layer."""
        return [
            (r[slot].clone(), c[slot].clone())
            for r, c in zip(self.recurrent, self.conv, strict=True)
        ]

    def write_state(self, slot: int, states: LinearStates) -> None:
        """Install states (as from `read_state` or a prefill checkpoint) into a slot, by copy."""
        if len(states) != len(self.recurrent):
            raise ValueError(f"expected {len(self.recurrent)} layer states, got {len(states)}")
        for (r, c), rec, conv in zip(states, self.recurrent, self.conv, strict=True):
            rec[slot].copy_(r)
            conv[slot].copy_(c)

    def copy_blocks(self, src: list[int], dst: list[int]) -> None:
        """Copy whole KV blocks src[i] -> dst[i] in every full-attention layer (copy-on-write)."""
        s = torch.tensor(src, dtype=torch.long, device=self.device)
        d = torch.tensor(dst, dtype=torch.long, device=self.device)
        for kv in self.kv:
            kv[d] = kv[s]
