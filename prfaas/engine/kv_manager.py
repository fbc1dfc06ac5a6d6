"""Per-request cache allocation on top of the hybrid prefix cache (scheduler-side bookkeeping).

Ownership: a request references every block in its `block_table` and its live `state_slot` from
admission until `free()`. Blocks for every position it may ever write are taken at admission
(prompt + max_tokens - 1; prompt only for prefill_only), so a running request can never run out of
cache mid-flight and nothing ever needs preempting. Full prompt blocks become prefix-cache blocks
once computed (`commit_computed`); the partial tail block and decode blocks stay private and are
freed with the request (for prefill_only: after its transfer, on release).
"""

from __future__ import annotations

from prfaas.block_hash import block_hashes
from prfaas.engine.block_pool import BlockPool
from prfaas.engine.prefix_cache import PrefixCache, PrefixHit
from prfaas.engine.prefix_spans import PrefixTransfers
from prfaas.request import Request, RequestKind


def usable_prompt_blocks(num_prompt_tokens: int, block_size: int) -> int:
    """Leading full prompt blocks a prefix hit may cover: at least one prompt token is always
    computed (for the logits), so a block-aligned prompt can reuse all but its last block."""
    return max(num_prompt_tokens - 1, 0) // block_size


class KVCacheManager:
    def __init__(
        self, prefix_cache: PrefixCache, block_size: int, enable_prefix_cache: bool = True
    ):
        self.cache = prefix_cache
        self.pool: BlockPool = prefix_cache.pool
        self.block_size = block_size
        self.enable_prefix_cache = enable_prefix_cache
        # request_id -> chained hashes of its full prompt blocks (computed once).
        self._hashes: dict[str, list[int]] = {}
        # request_id -> number of leading blocks already registered in (or taken from) the cache.
        self._num_committed: dict[str, int] = {}
        # request_id -> tokens of cached KV it matched past its usable hit (checkpoint_rule.py).
        self._junction: dict[str, int] = {}
        # Prefixes pinned for export or reserved for import (cross-worker cache reuse).
        self.transfers = PrefixTransfers(prefix_cache, block_size, enable_prefix_cache)

    def num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def hashes(self, req: Request) -> list[int]:
        if req.request_id not in self._hashes:
            self._hashes[req.request_id] = block_hashes(req.prompt_token_ids, self.block_size)
        return self._hashes[req.request_id]

    def bytes_needed(self, req: Request) -> int:
        """Cache bytes the request takes with no prefix hit."""
        return self.pool.cost(self.num_blocks_for(req.max_cache_tokens), 1)

    def never_fits(self, req: Request) -> str | None:
        """Why the request could not be admitted even into an empty cache, or None."""
        need = self.bytes_needed(req)
        if need > self.pool.budget_bytes:
            return (
                f"request {req.request_id} needs {need} B of cache for {req.max_cache_tokens} "
                f"tokens; the cache budget is {self.pool.budget_bytes} B"
            )
        return None

    def lookup(self, req: Request) -> PrefixHit:
        """Usable prefix hit, leaving at least one prompt token to compute (for the logits)."""
        if not self.enable_prefix_cache or req.kind is RequestKind.DECODE_ONLY:
            return PrefixHit([], None)
        max_blocks = usable_prompt_blocks(req.num_prompt_tokens, self.block_size)
        return self.cache.match(self.hashes(req)[:max_blocks])

    def allocate(self, req: Request) -> PrefixHit | None:
        """Admit: reference the hit, take the remaining blocks and a live slot. None if the cache
        is too full right now (nothing taken). The hit's checkpoint stays referenced (pinned)
        until the caller releases it, after the state copy has run."""
        hit = self.lookup(req)
        num_new = self.num_blocks_for(req.max_cache_tokens) - hit.num_blocks
        need = self.pool.cost(num_new, 1)
        reclaimable = self.cache.evictable_bytes - self.cache.evictable_bytes_in(hit)
        if need > self.pool.free_bytes + reclaimable:
            return None
        # Reference the hit first so that eviction below cannot take it.
        for b in hit.block_ids:
            self.cache.acquire_block(b)
        if hit.checkpoint_slot is not None:
            self.cache.acquire_slot(hit.checkpoint_slot)
        ok = self.cache.ensure_free(num_new, 1)
        assert ok, "admission arithmetic disagrees with eviction"
        req.block_table = hit.block_ids + self.pool.take_blocks(num_new)
        req.state_slot = self.pool.take_slot()
        req.num_cached_tokens = req.num_computed_tokens = hit.num_blocks * self.block_size
        self._num_committed[req.request_id] = hit.num_blocks
        if hit.junction_blocks:
            self._junction[req.request_id] = hit.junction_blocks * self.block_size
        return hit

    def junction(self, req: Request) -> int:
        """Where the request's prompt stopped matching cached KV at admission, when that is past
        its usable hit (tokens); 0 otherwise."""
        return self._junction.get(req.request_id, 0)

    def take_checkpoint_slot(self) -> int | None:
        """A slot for a new checkpoint, evicting older entries if needed; None if none fits."""
        if not self.cache.ensure_free(0, 1):
            return None
        return self.pool.take_slot()

    def commit_computed(self, req: Request) -> None:
        """Register the request's full prompt blocks computed so far as prefix-cache blocks."""
        if not self.enable_prefix_cache or req.kind is RequestKind.DECODE_ONLY:
            return
        hashes = self.hashes(req)
        done = min(req.num_computed_tokens, req.num_prompt_tokens) // self.block_size
        start = self._num_committed.get(req.request_id, 0)
        for i in range(start, done):
            self.cache.insert_block(hashes[i], i, req.block_table[i])
        self._num_committed[req.request_id] = max(start, done)

    def commit_checkpoint(self, req: Request, position: int, slot: int) -> None:
        """Register `slot` (state after `position` tokens) and drop the taking reference."""
        index = position // self.block_size - 1
        assert position % self.block_size == 0 and index >= 0
        self.cache.insert_checkpoint(self.hashes(req)[index], index, slot)
        self.cache.release_slot(slot)

    def free(self, req: Request) -> None:
        """Drop every reference the request holds. Deepest blocks first, so the LRU evicts a
        chain from its tail and a cached prefix stays matchable as long as possible."""
        for b in reversed(req.block_table):
            self.cache.release_block(b)
        if req.state_slot is not None:
            self.cache.release_slot(req.state_slot)
        req.block_table = []
        req.state_slot = None
        self._hashes.pop(req.request_id, None)
        self._num_committed.pop(req.request_id, None)
        self._junction.pop(req.request_id, None)

    def check_invariants(self, live: list[Request]) -> None:
        """Every block reference is held by a live request or a prefix export/import span."""
        self.cache.check_invariants()
        refs = [0] * self.pool.num_blocks
        tables = [r.block_table for r in live] + [s.block_table for s in self.transfers.held()]
        for table in tables:
            for b in table:
                refs[b] += 1
        for b, n in enumerate(refs):
            assert self.pool.block_refs[b] == n, (
                f"block {b}: refcount {self.pool.block_refs[b]} != {n} held"
            )
        live_slots = [r.state_slot for r in live if r.state_slot is not None]
        assert len(set(live_slots)) == len(live_slots), "two requests share a live slot"
