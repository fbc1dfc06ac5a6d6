"""Global prefix index: which worker holds which cached prefix, fed by the workers' cache events.

Block identity is the chained hash of `prfaas.block_hash.block_hashes` (re-exported here): equal
hashes at position i mean equal token prefixes [0, (i+1)·block_size). Each worker reports:
  STORED(block_hash, has_checkpoint)  a full block's KV is cached (and, if has_checkpoint, the
                                      linear-attention state after that block is checkpointed);
  EVICTED(block_hash)                 the block's KV (and any checkpoint at it) is gone;
  CHECKPOINT_STORED / CHECKPOINT_EVICTED(block_hash)  the state checkpoint alone changes;
  CLEARED                             the worker dropped its whole cache (restart, role change).

Usable prefix rule (paper §3.2, hybrid models): a worker can reuse the first k blocks of a request
only if it holds the KV of every block 0..k-1 *and* a linear-state checkpoint at block k-1
(recurrent state needs an exact-length match). A cluster's usable prefix is its best worker's: the
index does not assume a request can combine blocks held by different workers.

The index is plain data touched from one thread (the router's event loop); it never blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prfaas.block_hash import ROOT_HASH, block_hashes, hash_block
from prfaas.cache_event_kind import CacheEventKind

__all__ = [
    "ROOT_HASH",
    "CacheEvent",
    "PrefixIndex",
    "PrefixMatch",
    "block_hashes",
    "hash_block",
]


@dataclass(frozen=True)
class CacheEvent:
    """One change in one worker's prefix cache."""

    worker_id: str
    kind: CacheEventKind
    block_hash: int = 0
    """Chained hash of the block (ignored for CLEARED)."""
    has_checkpoint: bool = False
    """STORED only: a linear-state checkpoint exists at this block's end boundary."""


@dataclass(frozen=True)
class PrefixMatch:
    """Usable cached-prefix lengths (tokens) for one request's block-hash chain."""

    per_worker: dict[str, int] = field(default_factory=dict)
    """Worker id -> usable prefix tokens; workers with no usable prefix are absent."""
    per_cluster: dict[str, int] = field(default_factory=dict)
    """Cluster -> best usable prefix tokens of any of its workers; absent when 0."""
    best_worker: dict[str, str] = field(default_factory=dict)
    """Cluster -> the worker holding that best prefix (ties: lowest worker id)."""

    def cluster_tokens(self, cluster: str) -> int:
        return self.per_cluster.get(cluster, 0)

    def worker_tokens(self, worker_id: str) -> int:
        return self.per_worker.get(worker_id, 0)


class PrefixIndex:
    """Block hash -> {worker id -> has checkpoint}, plus each worker's cluster."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._blocks: dict[int, dict[str, bool]] = {}
        self._worker_blocks: dict[str, set[int]] = {}
        self._cluster_of: dict[str, str] = {}
        self.num_dropped_events = 0
        """Events from workers not registered (e.g. already removed); counted, not applied."""

    def register_worker(self, worker_id: str, cluster: str) -> None:
        """Called when a worker joins; its cache starts empty in the index."""
        self._cluster_of[worker_id] = cluster
        self._worker_blocks.setdefault(worker_id, set())

    def remove_worker(self, worker_id: str) -> None:
        """Called when a worker dies or is removed: forget everything it held."""
        self._clear(worker_id)
        self._cluster_of.pop(worker_id, None)
        self._worker_blocks.pop(worker_id, None)

    def _clear(self, worker_id: str) -> None:
        for h in self._worker_blocks.get(worker_id, set()):
            holders = self._blocks.get(h)
            if holders is not None:
                holders.pop(worker_id, None)
                if not holders:
                    del self._blocks[h]
        if worker_id in self._worker_blocks:
            self._worker_blocks[worker_id] = set()

    def apply(self, event: CacheEvent) -> None:
        """Apply one cache event; events may repeat (idempotent) but must be in order per worker."""
        w = event.worker_id
        if w not in self._cluster_of:
            self.num_dropped_events += 1
            return
        h = event.block_hash
        if event.kind is CacheEventKind.CLEARED:
            self._clear(w)
        elif event.kind is CacheEventKind.STORED:
            self._blocks.setdefault(h, {})[w] = event.has_checkpoint
            self._worker_blocks[w].add(h)
        elif event.kind is CacheEventKind.EVICTED:
            holders = self._blocks.get(h, {})
            holders.pop(w, None)
            if not holders:
                self._blocks.pop(h, None)
            self._worker_blocks[w].discard(h)
        elif h in self._blocks and w in self._blocks[h]:
            # A checkpoint event for a block whose KV is gone is stale; ignore it.
            self._blocks[h][w] = event.kind is CacheEventKind.CHECKPOINT_STORED

    def match(self, hashes: Sequence[int]) -> PrefixMatch:
        """Usable prefix per worker and per cluster for a request's chain `hashes`.

        Walks the chain while at least one worker still holds every block so far: O(len · holders).
        """
        per_worker: dict[str, int] = {}
        alive: set[str] | None = None
        for i, h in enumerate(hashes):
            holders = self._blocks.get(h)
            if not holders:
                break
            alive = set(holders) if alive is None else alive & holders.keys()
            if not alive:
                break
            for w in alive:
                if holders[w]:
                    per_worker[w] = (i + 1) * self.block_size
        per_cluster: dict[str, int] = {}
        best_worker: dict[str, str] = {}
        for w in sorted(per_worker):
            c = self._cluster_of[w]
            if per_worker[w] > per_cluster.get(c, 0):
                per_cluster[c] = per_worker[w]
                best_worker[c] = w
        return PrefixMatch(per_worker, per_cluster, best_worker)

    def match_tokens(self, token_ids: Sequence[int]) -> PrefixMatch:
        """`match` on the chain of `token_ids` (only full blocks can ever match)."""
        return self.match(block_hashes(token_ids, self.block_size))
