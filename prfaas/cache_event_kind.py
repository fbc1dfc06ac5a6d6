"""What changed in a worker's prefix cache: the one kind of cache event, torch-free and proto-free.

The engine's `PrefixCache` emits these (`prfaas.engine.prefix_cache.CacheEvent`), the worker sends
them over the wire, the router's `PrefixIndex` applies them (`prfaas.router.prefix_index`). The
values are the wire's numbers (`proto/prfaas/v1/worker.proto`, `CacheEvent.Kind`), so converting
is `kind.value` (or `kind.name`) one way and `CacheEventKind.from_wire` the other (tests/test_cache_event_kind.py
keeps the two in step).
"""

from __future__ import annotations

import enum


class CacheEventKind(enum.Enum):
    STORED = 1
    """A full block's KV is cached (with a linear-state checkpoint at its end if the event says so)."""
    EVICTED = 2
    """The block's KV, and any checkpoint at its end, is gone."""
    CLEARED = 3
    """The worker dropped its whole cache (restart, role change, a broken event stream)."""
    CHECKPOINT_STORED = 4
    """A linear-state checkpoint appeared at the end of an already stored block."""
    CHECKPOINT_EVICTED = 5
    """That checkpoint alone is gone; the block's KV stays."""

    @classmethod
    def from_wire(cls, value: int) -> CacheEventKind | None:
        """The kind a wire number names; None for KIND_UNSPECIFIED and numbers this build lacks."""
        try:
            return cls(value)
        except ValueError:
            return None
