"""One outgoing transfer: splits added layers into chunks and tracks what is on the wire.

Shared by the TCP and loopback senders, which implement `ChunkLink`. Everything runs on the event
loop except `add_threadsafe`. The handle keeps the producer's memoryviews (inside queued chunks)
until each chunk is written to the kernel; on a terminal state it drops all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import (
    TransferAborted,
    TransferError,
    TransferRefused,
    TransferState,
)
from prfaas.kvtransfer.segments import RangeSet, SegmentMap

_MASK64 = (1 << 64) - 1


@dataclass(eq=False)
class PendingChunk:
    handle: SendHandle
    layer: int
    offset: int
    # Slices of the producer's buffers; released once written.
    parts: list[memoryview]
    length: int


class ChunkLink(Protocol):
    """What a SendHandle needs from the transport carrying it."""

    def chunks_ready(self, handle: SendHandle) -> None: ...
    def send_layer_done(self, handle: SendHandle, layer: int) -> None: ...
    def send_done(self, handle: SendHandle) -> None: ...
    def send_abort(self, handle: SendHandle, reason: str) -> None: ...
    def released(self, handle: SendHandle, unsent_bytes: int) -> None: ...
    async def drained(self) -> None: ...


class SendHandle:
    """Returned by `KVSender.open`. `add` never blocks; backpressure is `await drained()`."""

    def __init__(
        self,
        transfer_id: str,
        layout: list[wire.LayerLayout],
        metadata: bytes,
        link: ChunkLink,
        chunk_bytes: int,
    ) -> None:
        self.transfer_id = transfer_id
        self.layout = layout
        self.metadata = metadata
        self.chunk_bytes = chunk_bytes
        self.state = TransferState.PENDING
        self.error: TransferError | None = None
        self.opened = False
        self.trailer: bytes | None = None
        self.digest = 0
        self.bytes_sent = 0
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self._link = link
        self._loop = asyncio.get_running_loop()
        self._layer_bytes = [wire.layer_nbytes(layer) for layer in layout]
        self._added = [RangeSet() for _ in layout]
        self._sent = [0] * len(layout)
        self._chunks: deque[PendingChunk] = deque()
        self._queued = 0
        self._writing = 0
        self._done_sent = False
        self._done_event = asyncio.Event()

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def add(self, layer_idx: int, segments: list[memoryview], offset: int = 0) -> bool:
        """Queue bytes [offset, offset+len) of layer `layer_idx` (event loop only, non-blocking).

        Returns False (and queues nothing) if the transfer already ended; raises ValueError for
        an out-of-range or overlapping piece. Do not modify `segments` until wait_done().
        """
        if self.state.terminal:
            return False
        if self.trailer is not None:
            raise ValueError("add() after finish()")
        if not 0 <= layer_idx < len(self.layout):
            raise ValueError(f"layer {layer_idx} out of range")
        src = SegmentMap(segments)
        if offset < 0 or offset + src.nbytes > self._layer_bytes[layer_idx]:
            raise ValueError(f"layer {layer_idx}: [{offset}, {offset + src.nbytes}) out of range")
        if not self._added[layer_idx].add(offset, offset + src.nbytes):
            raise ValueError(f"layer {layer_idx}: bytes at {offset} were already added")
        for pos in range(0, src.nbytes, self.chunk_bytes):
            n = min(self.chunk_bytes, src.nbytes - pos)
            self._chunks.append(PendingChunk(self, layer_idx, offset + pos, src.slices(pos, n), n))
        self._queued += src.nbytes
        if self.state == TransferState.PENDING:
            self.state = TransferState.TRANSFERRING
        self._link.chunks_ready(self)
        self._check_layer(layer_idx)
        return True

    def add_threadsafe(self, layer_idx: int, segments: list[memoryview], offset: int = 0) -> None:
        """`add` from another thread (e.g. the prefill compute thread); errors fail the transfer."""
        self._loop.call_soon_threadsafe(self._add_logged, layer_idx, segments, offset)

    def _add_logged(self, layer_idx: int, segments: list[memoryview], offset: int) -> None:
        try:
            self.add(layer_idx, segments, offset)
        except ValueError as exc:
            self.fail(TransferError(f"bad add from producer thread: {exc}"))

    def finish(self, trailer: bytes = b"") -> None:
        """Every layer was added; DONE (with `trailer`) is sent after the last chunk."""
        if self.state.terminal:
            return
        missing = [i for i, n in enumerate(self._layer_bytes) if self._added[i].covered != n]
        if missing:
            raise ValueError(f"finish() with layers {missing[:8]} incomplete")
        if len(trailer) > wire.MAX_BLOB:
            raise ValueError(f"trailer of {len(trailer)} bytes exceeds {wire.MAX_BLOB}")
        self.trailer = bytes(trailer)
        self.state = TransferState.TRANSFERRING
        self._maybe_done()

    def finish_threadsafe(self, trailer: bytes = b"") -> None:
        self._loop.call_soon_threadsafe(self.finish, trailer)

    def has_chunks(self) -> bool:
        return self.opened and bool(self._chunks) and not self.state.terminal

    def pop_chunk(self) -> PendingChunk | None:
        if not self.has_chunks():
            return None
        self._writing += 1
        chunk = self._chunks.popleft()
        self._queued -= chunk.length
        return chunk

    def chunk_written(self, chunk: PendingChunk, chunk_checksum: int) -> None:
        """The transport wrote `chunk` to the kernel; its buffer references are dropped here."""
        self._writing -= 1
        chunk.parts = []
        if self.state.terminal:
            return
        term = wire.digest_term(chunk.layer, chunk.offset, chunk.length, chunk_checksum)
        self.digest = (self.digest + term) & _MASK64
        self.bytes_sent += chunk.length
        self._sent[chunk.layer] += chunk.length
        self._check_layer(chunk.layer)
        self._maybe_done()

    def _check_layer(self, layer: int) -> None:
        if (
            self._sent[layer] == self._layer_bytes[layer]
            and self._added[layer].covered == self._sent[layer]
        ):
            self._link.send_layer_done(self, layer)

    def _maybe_done(self) -> None:
        ready = self.trailer is not None and self.opened and not self._chunks and self._writing == 0
        if ready and not self._done_sent and not self.state.terminal:
            self._done_sent = True
            self._link.send_done(self)

    def mark_opened(self) -> None:
        """The receiver accepted the OPEN; queued chunks may flow."""
        self.opened = True
        self._link.chunks_ready(self)
        self._maybe_done()

    def complete(self) -> None:
        """The receiver acknowledged the verified transfer."""
        self._finish(TransferState.DONE, None)

    def fail(self, error: TransferError, state: TransferState = TransferState.FAILED) -> None:
        if not self.state.terminal:
            self._finish(state, error)

    def refused_or_aborted(self, reason: str) -> None:
        """The receiver sent ABORT: before OPEN_OK it is a refusal, afterwards an abort."""
        if self.opened:
            self.fail(TransferAborted(f"aborted by receiver: {reason}"), TransferState.ABORTED)
        else:
            self.fail(TransferRefused(f"refused by receiver: {reason}"))

    def abort(self, reason: str) -> None:
        """Abort from the sending side; the receiver is told with an ABORT frame."""
        if self.state.terminal:
            return
        self.fail(TransferAborted(f"aborted by sender: {reason}"), TransferState.ABORTED)
        self._link.send_abort(self, reason)

    def _finish(self, state: TransferState, error: TransferError | None) -> None:
        self.state, self.error = state, error
        self.finished_at = time.monotonic()
        unsent = self.queued_bytes
        for chunk in self._chunks:
            chunk.parts = []
        self._chunks.clear()
        self._queued = 0
        self._done_event.set()
        self._link.released(self, unsent)

    async def drained(self) -> None:
        """Waits while the peer's queued bytes are above its limit (producer backpressure)."""
        await self._link.drained()

    async def wait_done(self) -> None:
        """Returns once the receiver verified every byte; raises a TransferError otherwise."""
        await self._done_event.wait()
        if self.error is not None:
            raise self.error
