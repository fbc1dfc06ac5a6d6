"""Moving a cached prefix between workers (paper §2.3: reuse a cache held in the other cluster).

Two kinds of span, both owned by `PrefixTransfers` (itself owned by the KV manager) and both
holding ordinary pool references, so eviction can never free them while they exist:
- an *export pin*: the holder references the cached blocks of a usable prefix and the linear-state
  checkpoint at its end (`pin`) while a sender reads them, then drops the references (`unpin`);
- an *import reservation*: the target takes fresh private blocks and one slot (`reserve`), a KV
  receiver writes the prefix into them, then `commit` enters them into the prefix cache under the
  chained block hashes (checkpoint at the last block) and drops the references, or `abort` frees
  them. Blocks whose hash the target already caches stay private and are freed at commit.
Only whole blocks move: the prefix length is a positive multiple of the block size. All methods run
on the engine's compute thread, between steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.block_hash import block_hashes
from prfaas.engine.prefix_cache import PrefixCache


class PrefixUnavailable(ValueError):
    """The prefix cannot be pinned (not fully cached) or reserved (no room, bad length)."""


@dataclass(eq=False)
class PrefixSpan:
    """A prefix's cache as the backend's view methods read it (the fields of a Request they use)."""

    span_id: str
    token_ids: list[int]
    hashes: list[int]
    block_table: list[int]
    state_slot: int | None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_computed_tokens(self) -> int:
        return len(self.token_ids)


class PrefixTransfers:
    def __init__(self, cache: PrefixCache, block_size: int, enabled: bool = True) -> None:
        self.cache = cache
        self.pool = cache.pool
        self.block_size = block_size
        self.enabled = enabled
        self.pins: dict[str, PrefixSpan] = {}
        self.imports: dict[str, PrefixSpan] = {}

    def _hashes(self, span_id: str, token_ids: list[int]) -> list[int]:
        if span_id in self.pins or span_id in self.imports:
            raise ValueError(f"duplicate prefix span id {span_id}")
        if not token_ids or len(token_ids) % self.block_size:
            raise PrefixUnavailable(
                f"prefix of {len(token_ids)} tokens is not a positive multiple of the block "
                f"size {self.block_size}"
            )
        if not self.enabled:
            raise PrefixUnavailable("prefix cache disabled on this worker")
        return block_hashes(token_ids, self.block_size)

    def pin(self, span_id: str, token_ids: list[int]) -> PrefixSpan:
        """Reference the cached blocks and the end checkpoint of exactly `token_ids`."""
        hashes = self._hashes(span_id, token_ids)
        hit = self.cache.match(hashes)
        if hit.num_blocks != len(hashes) or hit.checkpoint_slot is None:
            raise PrefixUnavailable(
                f"usable cached prefix is {hit.num_blocks * self.block_size} of "
                f"{len(token_ids)} tokens"
            )
        for b in hit.block_ids:
            self.cache.acquire_block(b)
        self.cache.acquire_slot(hit.checkpoint_slot)
        span = PrefixSpan(span_id, list(token_ids), hashes, hit.block_ids, hit.checkpoint_slot)
        self.pins[span_id] = span
        return span

    def unpin(self, span_id: str) -> bool:
        span = self.pins.pop(span_id, None)
        if span is not None:
            self._release(span)
        return span is not None

    def reserve(self, span_id: str, token_ids: list[int]) -> PrefixSpan:
        """Take private blocks for every prefix block and one state slot (evicting LRU entries)."""
        hashes = self._hashes(span_id, token_ids)
        n = len(hashes)
        need = self.pool.cost(n, 1)
        if need > self.pool.free_bytes + self.cache.evictable_bytes or not self.cache.ensure_free(
            n, 1
        ):
            raise PrefixUnavailable(
                f"no room for a {len(token_ids)}-token prefix ({need} B) in the cache"
            )
        span = PrefixSpan(
            span_id, list(token_ids), hashes, self.pool.take_blocks(n), self.pool.take_slot()
        )
        self.imports[span_id] = span
        return span

    def commit(self, span_id: str) -> int:
        """Enter a fully received import into the prefix cache; returns the usable cached length
        of the prefix afterwards (its own length unless the target cached part of it already)."""
        span = self.imports.pop(span_id)
        assert span.state_slot is not None
        for i, (h, b) in enumerate(zip(span.hashes, span.block_table, strict=True)):
            self.cache.insert_block(h, i, b)
        self.cache.insert_checkpoint(span.hashes[-1], len(span.hashes) - 1, span.state_slot)
        self._release(span)
        return self.cache.match(span.hashes).num_blocks * self.block_size

    def abort(self, span_id: str) -> bool:
        """Free an import reservation (nothing was installed)."""
        span = self.imports.pop(span_id, None)
        if span is not None:
            self._release(span)
        return span is not None

    def _release(self, span: PrefixSpan) -> None:
        # Deepest blocks first and the checkpoint last, as KVCacheManager.free does: the LRU then
        # evicts the chain from its tail and the checkpoint only after its block.
        for b in reversed(span.block_table):
            self.cache.release_block(b)
        if span.state_slot is not None:
            self.cache.release_slot(span.state_slot)
        span.block_table, span.state_slot = [], None

    def held(self) -> list[PrefixSpan]:
        return list(self.pins.values()) + list(self.imports.values())
