"""Hybrid prefix cache over a `BlockPool` (paper §3.2, docs/hybrid-model.md §3.3).

- Full prompt blocks are keyed by their chained block hash (`prfaas.block_hash`): a prompt matches
  block by block from the start (partial prefix match at block granularity).
- Linear-state checkpoints are keyed by the hash of the block they end: the state after exactly
  (index + 1) * block_size tokens; reusable only at that exact length.
- The usable hit is the longest prefix whose blocks are all cached *and* that ends at a checkpoint.
  Which positions get one is `prfaas/checkpoint_rule.py` (the scheduler applies it).
- Cached entries outlive their requests: at refcount 0 they sit in one LRU (blocks and checkpoints
  together, one budget) and are evicted oldest first when the pool needs bytes.
- Every store and eviction is reported to an optional listener (the worker forwards them to the
  router's prefix index). The listener runs synchronously on the engine thread: keep it cheap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prfaas.cache_event_kind import CacheEventKind
from prfaas.engine.block_pool import BlockPool


@dataclass(frozen=True)
class CacheEvent:
    # Never CLEARED: the engine's cache only stores and evicts (the worker's stream clears).
    kind: CacheEventKind
    block_hash: int
    # Block position in the prompt: covers tokens [index * block_size, (index + 1) * block_size).
    block_index: int
    # Whether a state checkpoint exists at the end of this block after the event.
    has_checkpoint: bool


CacheListener = Callable[[CacheEvent], None]


@dataclass(frozen=True)
class PrefixHit:
    # Cached blocks covering the usable prefix, in order (len = num_blocks).
    block_ids: list[int]
    # Checkpoint slot holding the state after num_blocks * block_size tokens; None when no hit.
    checkpoint_slot: int | None
    # Leading blocks whose KV is cached, checkpoint or not (>= num_blocks): where the prompt stops
    # sharing cached KV (the checkpoint rule's junction).
    num_matched_blocks: int = 0

    @property
    def num_blocks(self) -> int:
        return len(self.block_ids)

    @property
    def junction_blocks(self) -> int:
        """Where the prompt stopped matching cached KV, when that is past the usable hit (blocks;
        0 otherwise): the checkpoint rule's junction (prfaas/checkpoint_rule.py)."""
        return self.num_matched_blocks if self.num_matched_blocks > self.num_blocks else 0


_BLOCK, _SLOT = "block", "slot"


class PrefixCache:
    def __init__(self, pool: BlockPool, listener: CacheListener | None = None) -> None:
        self.pool = pool
        self.listener = listener
        self._block_by_hash: dict[int, int] = {}
        self._block_key: dict[int, tuple[int, int]] = {}  # block id -> (hash, index)
        self._ckpt_by_hash: dict[int, int] = {}
        self._ckpt_key: dict[int, tuple[int, int]] = {}  # slot -> (hash, index)
        # Unreferenced cached entries, least recently used first: (kind, id) -> None.
        self._lru: OrderedDict[tuple[str, int], None] = OrderedDict()

    def _emit(self, kind: CacheEventKind, block_hash: int, index: int) -> None:
        if self.listener is not None:
            self.listener(CacheEvent(kind, block_hash, index, block_hash in self._ckpt_by_hash))

    def match(self, hashes: list[int]) -> PrefixHit:
        """Longest usable hit for a prompt's block hashes. Takes no references."""
        blocks: list[int] = []
        best = 0
        for h in hashes:
            b = self._block_by_hash.get(h)
            if b is None:
                break
            blocks.append(b)
            if h in self._ckpt_by_hash:
                best = len(blocks)
        if best == 0:
            return PrefixHit([], None, len(blocks))
        return PrefixHit(blocks[:best], self._ckpt_by_hash[hashes[best - 1]], len(blocks))

    def evictable_bytes_in(self, hit: PrefixHit) -> int:
        """Bytes of `hit` now counted as evictable (they stop being so once referenced)."""
        n_blocks = sum((_BLOCK, b) in self._lru for b in hit.block_ids)
        n_slots = int(hit.checkpoint_slot is not None and (_SLOT, hit.checkpoint_slot) in self._lru)
        return self.pool.cost(n_blocks, n_slots)

    @property
    def evictable_bytes(self) -> int:
        n_slots = sum(kind == _SLOT for kind, _ in self._lru)
        return self.pool.cost(len(self._lru) - n_slots, n_slots)

    def acquire_block(self, block_id: int) -> None:
        self.pool.block_refs[block_id] += 1
        self._lru.pop((_BLOCK, block_id), None)

    def acquire_slot(self, slot: int) -> None:
        self.pool.slot_refs[slot] += 1
        self._lru.pop((_SLOT, slot), None)

    def release_block(self, block_id: int) -> None:
        """Drop one reference; at zero a cached block becomes evictable, a private one is freed."""
        self.pool.block_refs[block_id] -= 1
        assert self.pool.block_refs[block_id] >= 0, f"block {block_id} released twice"
        if self.pool.block_refs[block_id] == 0:
            if block_id in self._block_key:
                self._lru[(_BLOCK, block_id)] = None
            else:
                self.pool.put_block(block_id)

    def release_slot(self, slot: int) -> None:
        self.pool.slot_refs[slot] -= 1
        assert self.pool.slot_refs[slot] >= 0, f"slot {slot} released twice"
        if self.pool.slot_refs[slot] == 0:
            if slot in self._ckpt_key:
                self._lru[(_SLOT, slot)] = None
            else:
                self.pool.put_slot(slot)

    def insert_block(self, block_hash: int, index: int, block_id: int) -> bool:
        """Make a referenced, fully written block reusable. False if the hash is already cached
        by another block (this one then stays private to its request)."""
        if block_hash in self._block_by_hash or block_id in self._block_key:
            return False
        assert self.pool.block_refs[block_id] > 0
        self._block_by_hash[block_hash] = block_id
        self._block_key[block_id] = (block_hash, index)
        self._emit(CacheEventKind.STORED, block_hash, index)
        return True

    def insert_checkpoint(self, block_hash: int, index: int, slot: int) -> bool:
        """Register a referenced slot holding the state at the end of block `index`."""
        if block_hash in self._ckpt_by_hash or slot in self._ckpt_key:
            return False
        assert self.pool.slot_refs[slot] > 0
        self._ckpt_by_hash[block_hash] = slot
        self._ckpt_key[slot] = (block_hash, index)
        self._emit(CacheEventKind.CHECKPOINT_STORED, block_hash, index)
        return True

    def evict_until(self, num_bytes: int) -> bool:
        """Evict LRU entries until `num_bytes` are free. False (having evicted what it could)
        if even an empty LRU leaves too little."""
        while self.pool.free_bytes < num_bytes and self._lru:
            kind, i = next(iter(self._lru))
            if kind == _BLOCK:
                self._evict_block(i)
            else:
                self._evict_slot(i)
        return self.pool.free_bytes >= num_bytes

    def ensure_free(self, num_blocks: int, num_slots: int) -> bool:
        """Evict until `num_blocks` block ids, `num_slots` slot ids and their bytes are free."""
        self.evict_until(self.pool.cost(num_blocks, num_slots))
        # Ids can run short only while bytes do not (each kind's id count matches the budget).
        return self.pool.can_take(num_blocks, num_slots)

    def _evict_block(self, block_id: int) -> None:
        del self._lru[(_BLOCK, block_id)]
        h, index = self._block_key.pop(block_id)
        del self._block_by_hash[h]
        # A checkpoint at the end of a missing block can never be part of a usable hit.
        slot = self._ckpt_by_hash.get(h)
        if slot is not None and (_SLOT, slot) in self._lru:
            self._evict_slot(slot)
        self.pool.put_block(block_id)
        self._emit(CacheEventKind.EVICTED, h, index)

    def _evict_slot(self, slot: int) -> None:
        del self._lru[(_SLOT, slot)]
        h, index = self._ckpt_key.pop(slot)
        del self._ckpt_by_hash[h]
        self.pool.put_slot(slot)
        self._emit(CacheEventKind.CHECKPOINT_EVICTED, h, index)

    def clear(self) -> None:
        """Evict every unreferenced entry (tests, and a role change that drops the cache)."""
        self.evict_until(self.pool.budget_bytes + 1)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._block_by_hash)

    @property
    def num_checkpoints(self) -> int:
        return len(self._ckpt_by_hash)

    def check_invariants(self) -> None:
        self.pool.check_invariants()
        assert len(self._block_by_hash) == len(self._block_key)
        assert len(self._ckpt_by_hash) == len(self._ckpt_key)
        for h, b in self._block_by_hash.items():
            assert self._block_key[b][0] == h
            assert (self.pool.block_refs[b] == 0) == ((_BLOCK, b) in self._lru)
        for h, s in self._ckpt_by_hash.items():
            assert self._ckpt_key[s][0] == h
            assert (self.pool.slot_refs[s] == 0) == ((_SLOT, s) in self._lru)
        for kind, i in self._lru:
            assert i in (self._block_key if kind == _BLOCK else self._ckpt_key)
