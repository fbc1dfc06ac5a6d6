"""Fan a worker's prefix-cache events out to every router subscribed to them.

The engine's listener runs on the compute thread; `listener` hops each event onto the event loop,
where subscribers (one asyncio.Queue per `StreamCacheEvents` call) receive it. A subscriber that
stops reading loses nothing but its own queue, which is bounded: on overflow it is dropped and its
stream ends, so the router resubscribes and rebuilds its view from a CLEARED + fresh events.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prfaas.cache_event_kind import CacheEventKind
from prfaas.engine.prefix_cache import CacheEvent

MAX_QUEUED = 100_000


class CacheEventHub:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[CacheEvent | None]] = set()
        # Events seen so far that still describe live cache entries, replayed to new subscribers.
        self._live: dict[tuple[int, int], CacheEvent] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def listener(self, event: CacheEvent) -> None:
        """Engine callback (compute thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish, event)

    def _publish(self, event: CacheEvent) -> None:
        key = (event.block_index, event.block_hash)
        if event.kind is CacheEventKind.EVICTED:
            self._live.pop(key, None)
        else:
            # The live view of a block: stored, with or without a checkpoint at its end.
            self._live[key] = replace(event, kind=CacheEventKind.STORED)
        for queue in list(self._subscribers):
            if queue.qsize() >= MAX_QUEUED:
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[CacheEvent | None]:
        queue: asyncio.Queue[CacheEvent | None] = asyncio.Queue()
        for event in self._live.values():
            queue.put_nowait(event)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[CacheEvent | None]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._subscribers.clear()
