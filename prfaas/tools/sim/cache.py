"""A prefill instance's hybrid prefix cache: the engine's own `PrefixCache` over a `BlockPool`.

Byte budget, one LRU over blocks and state checkpoints, and the usable-hit rule (every block of the
prefix cached *and* a checkpoint at its end) are the engine's code, run without a backend: the
simulator only takes and releases ids, as the scheduler would. A finished prefill's full blocks
enter the cache with checkpoints where the engine's rule puts them (`prfaas/checkpoint_rule.py`:
the prompt's last full block and every `checkpoint_every_blocks` blocks, the engine's default
interval; the engine's junction checkpoint is not modelled) and are released at once, so they sit
in the LRU until evicted. Events go to the
router's `PrefixIndex` as the worker's event stream would carry them (without its delay).
"""

from __future__ import annotations

from prfaas.checkpoint_rule import DEFAULT_CHECKPOINT_EVERY_BLOCKS, checkpoint_positions
from prfaas.engine.block_pool import BlockPool
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

    def match_tokens(self, hashes: tuple[int, ...], prompt_tokens: int) -> int:
        """Usable cached prefix of a prompt (at most prompt - 1: one token is always computed)."""
        hit = self.cache.match(list(hashes))
        tokens = min(hit.num_blocks * self.block_size, max(prompt_tokens - 1, 0))
        self.lookups += 1
        self.hit_tokens += tokens
        self.prompt_tokens += prompt_tokens
        return tokens

    def store(self, hashes: tuple[int, ...], prompt_tokens: int) -> None:
        """A prefill over these full blocks finished: refresh what is cached, insert the rest.
        Every block is held until the end (as the running request holds it), then released into
        the LRU, so inserting block i never evicts blocks 0..i-1 of the same prompt."""
        c = self.cache
        bs = self.block_size
        ends = set(checkpoint_positions(0, len(hashes) * bs, prompt_tokens, bs, self.every))
        blocks: list[int] = []
        slots: list[int] = []
        for i, h in enumerate(hashes):
            ckpt = (i + 1) * bs in ends
            block = c._block_by_hash.get(h)  # noqa: SLF001 - read-only peek, as match() does
            if block is None:
                if not c.ensure_free(1, int(ckpt)):
                    break
                (block,) = c.pool.take_blocks(1)
                c.insert_block(h, i, block)
            else:
                c.acquire_block(block)
            blocks.append(block)
            slot = c._ckpt_by_hash.get(h)  # noqa: SLF001
            if slot is not None:
                c.acquire_slot(slot)
            elif ckpt:
                if not c.ensure_free(0, 1):
                    break
                slot = c.pool.take_slot()
                c.insert_checkpoint(h, i, slot)
            if slot is not None:
                slots.append(slot)
        for block in blocks:
            c.release_block(block)
        for slot in slots:
            c.release_slot(slot)

    def clear(self) -> None:
        self.cache.clear()
