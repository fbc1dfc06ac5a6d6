"""Physical cache entries and the one byte budget they share (paper §3.2, unified pool).

Two kinds of entry draw from one budget:
- a full-attention KV *block* (block_size tokens of every full layer): `block_bytes` each;
- a linear-state *slot* (recurrent + conv state of every linear layer): `slot_bytes` each. A slot
  holds either a running request's live state or a prefix-cache checkpoint.

The backend allocates tensors for `num_blocks` blocks and `num_slots` slots (each the most that the
budget could ever hold of that kind); this pool decides which ids are in use, so the bytes in use
never exceed the budget whatever the mix. Reference counts live here; which entries are prefix
cached (and so survive at refcount 0) is `PrefixCache`'s business.
"""

from __future__ import annotations

from collections import deque


class BlockPool:
    def __init__(self, budget_bytes: int, block_bytes: int, slot_bytes: int) -> None:
        if block_bytes <= 0 or slot_bytes <= 0:
            raise ValueError("block_bytes and slot_bytes must be positive")
        if budget_bytes < block_bytes + slot_bytes:
            raise ValueError(
                f"cache budget {budget_bytes} B cannot hold one block ({block_bytes} B) "
                f"and one state slot ({slot_bytes} B)"
            )
        self.budget_bytes = budget_bytes
        self.block_bytes = block_bytes
        self.slot_bytes = slot_bytes
        self.num_blocks = budget_bytes // block_bytes
        self.num_slots = budget_bytes // slot_bytes
        self._free_blocks: deque[int] = deque(range(self.num_blocks))
        self._free_slots: deque[int] = deque(range(self.num_slots))
        self.block_refs = [0] * self.num_blocks
        self.slot_refs = [0] * self.num_slots
        # Bytes of every taken entry, referenced or merely cached.
        self.used_bytes = 0

    def cost(self, num_blocks: int, num_slots: int) -> int:
        return num_blocks * self.block_bytes + num_slots * self.slot_bytes

    @property
    def free_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes

    def can_take(self, num_blocks: int, num_slots: int) -> bool:
        """Whether the ids and the bytes are free right now (no eviction)."""
        return (
            num_blocks <= len(self._free_blocks)
            and num_slots <= len(self._free_slots)
            and self.cost(num_blocks, num_slots) <= self.free_bytes
        )

    def take_blocks(self, n: int) -> list[int]:
        """Take n free blocks with refcount 1 each; the caller must have checked can_take."""
        assert self.can_take(n, 0), "take_blocks without room"
        ids = [self._free_blocks.popleft() for _ in range(n)]
        for i in ids:
            assert self.block_refs[i] == 0
            self.block_refs[i] = 1
        self.used_bytes += n * self.block_bytes
        return ids

    def take_slot(self) -> int:
        """Take one free slot with refcount 1; the caller must have checked can_take."""
        assert self.can_take(0, 1), "take_slot without room"
        s = self._free_slots.popleft()
        assert self.slot_refs[s] == 0
        self.slot_refs[s] = 1
        self.used_bytes += self.slot_bytes
        return s

    def put_block(self, block_id: int) -> None:
        """Return an unreferenced block to the free list (its bytes leave the budget)."""
        assert self.block_refs[block_id] == 0, f"block {block_id} still referenced"
        self._free_blocks.append(block_id)
        self.used_bytes -= self.block_bytes

    def put_slot(self, slot: int) -> None:
        assert self.slot_refs[slot] == 0, f"slot {slot} still referenced"
        self._free_slots.append(slot)
        self.used_bytes -= self.slot_bytes

    @property
    def num_free_blocks(self) -> int:
        return len(self._free_blocks)

    @property
    def num_free_slots(self) -> int:
        return len(self._free_slots)

    def check_invariants(self) -> None:
        assert len(set(self._free_blocks)) == len(self._free_blocks), "block freed twice"
        assert len(set(self._free_slots)) == len(self._free_slots), "slot freed twice"
        assert all(self.block_refs[b] == 0 for b in self._free_blocks)
        assert all(self.slot_refs[s] == 0 for s in self._free_slots)
        assert all(r >= 0 for r in self.block_refs) and all(r >= 0 for r in self.slot_refs)
        taken = self.cost(
            self.num_blocks - len(self._free_blocks), self.num_slots - len(self._free_slots)
        )
        assert taken == self.used_bytes <= self.budget_bytes, (taken, self.used_bytes)
