"""A prefill instance's hybrid prefix cache: the engine's own `PrefixCache` over a `BlockPool`.

Byte budget, one LRU over blocks and state checkpoints, and the usable-hit rule (every block of the
prefix cached *and* a checkpoint at its end) are the engine's code, run without a backend: the
simulator only takes and releases ids, as the scheduler would. The hit is taken at admission over
the blocks the engine may reuse (`usable_prompt_blocks`), with the junction the engine records
(`PrefixHit.junction_blocks`); a finished prefill's computed blocks enter the cache with checkpoints
where the engine's rule puts them over the computed tokens (`prfaas/checkpoint_rule.py`: prompt
end, junction, every `checkpoint_every_blocks` blocks) and are released at once, in the engine's
order, so they sit in the LRU until evicted (`tests/sim/test_cache_vs_engine.py` checks the hits
against the engine's). Not modelled: the engine takes a request's blocks at admission (and evicts
for them then), the simulator at the prefill's end. Events go to the
router's `PrefixIndex` as the worker's event stream would carry them (without its delay).
"""

from __future__ import annotations

from prfaas.checkpoint_rule import DEFAULT_CHECKPOINT_EVERY_BLOCKS, checkpoint_positions
from prfaas.engine.block_pool import BlockPool
from prfaas.engine.kv_manager import usable_prompt_blocks
from prfaas.engine.prefix_cache import CacheEvent as EngineEvent
from prfaas.engine.prefix_cache import PrefixCache
from prfaas.router.prefix_index import CacheEvent, PrefixIndex


class InstanceCache:
    def __init__(
        self,
        worker_id: str,
        index: PrefixIndex,
        budget_bytes: int,
        block_bytes: int,
        slot_bytes: int,
        checkpoint_every_blocks: int = DEFAULT_CHECKPOINT_EVERY_BLOCKS,
    ) -> None:
        self.worker_id, self.index = worker_id, index
        self.block_size = index.block_size
        self.every = checkpoint_every_blocks
        self.cache = PrefixCache(BlockPool(budget_bytes, block_bytes, slot_bytes), self._forward)
        self.lookups = self.hit_tokens = self.prompt_tokens = 0

    def _forward(self, ev: EngineEvent) -> None:
        self.index.apply(CacheEvent(self.worker_id, ev.kind, ev.block_hash, ev.has_checkpoint))

    def match(self, hashes: tuple[int, ...], prompt_tokens: int) -> tuple[int, int]:
        """At admission, as the engine's `KVCacheManager.allocate`: (usable cached tokens,
        junction tokens). The hit covers at most `usable_prompt_blocks` (one token is always
        computed); the junction is where the prompt's cached KV stopped matching past that hit
        (`PrefixHit.junction_blocks`, 0 for none), where the prefill will checkpoint."""
        bs = self.block_size
        hit = self.cache.match(list(hashes[: usable_prompt_blocks(prompt_tokens, bs)]))
        tokens = hit.num_blocks * bs
        self.lookups += 1
        self.hit_tokens += tokens
        self.prompt_tokens += prompt_tokens
        return tokens, hit.junction_blocks * bs

    def store(
        self, hashes: tuple[int, ...], prompt_tokens: int, cached_tokens: int, junction: int
    ) -> None:
        """A prefill over these full blocks finished, having reused `cached_tokens` and matched
        cached KV up to `junction` at admission (`match`): what the engine's scheduler leaves in
        its cache. The hit's blocks and its checkpoint are refreshed (the request referenced
        them); each computed block is inserted unless its hash is cached already (the engine's
        copy then stays private and the cached one is not refreshed); a checkpoint goes where the
        rule puts one over the computed tokens (prompt end, junction, interval) unless one is
        there. Everything is held until the end, then released as the engine does: checkpoints
        in order (each chunk's, after it ran), then blocks deepest first (`KVCacheManager.free`),
        so the LRU evicts a prompt's chain from its tail."""
        c = self.cache
        bs = self.block_size
        hit_blocks = cached_tokens // bs
        ends = set(checkpoint_positions(cached_tokens, prompt_tokens, prompt_tokens, bs,
                                        self.every, junction))  # fmt: skip
        blocks: list[int] = []
        slots: list[int] = []
        # Read-only peeks at the cache's maps, as match() does.
        hit_slot = c._ckpt_by_hash.get(hashes[hit_blocks - 1]) if hit_blocks else None  # noqa: SLF001
        if hit_slot is not None:
            c.acquire_slot(hit_slot)
            slots.append(hit_slot)
        for i, h in enumerate(hashes):
            ckpt = (i + 1) * bs in ends and h not in c._ckpt_by_hash  # noqa: SLF001
            block = c._block_by_hash.get(h)  # noqa: SLF001
            if block is None:
                if not c.ensure_free(1, int(ckpt)):
                    break
                (block,) = c.pool.take_blocks(1)
                c.insert_block(h, i, block)
                blocks.append(block)
            elif i < hit_blocks:
                c.acquire_block(block)
                blocks.append(block)
            if ckpt:
                if not c.ensure_free(0, 1):
                    break
                slot = c.pool.take_slot()
                c.insert_checkpoint(h, i, slot)
                slots.append(slot)
        for slot in slots:
            c.release_slot(slot)
        for block in reversed(blocks):
            c.release_block(block)

    def clear(self) -> None:
        self.cache.clear()
