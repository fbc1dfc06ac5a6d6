"""One expected incoming transfer: layer coverage, verification, deadline and terminal state.

Shared by the TCP and loopback receivers. Everything runs on the event loop. The handle holds the
destination memoryviews only while the transfer is PENDING/TRANSFERRING; on any terminal state it
drops them (`dest is None`), and a transport must call `dest_slices` before every write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prfaas.kvtransfer.base import (
    ChecksumError,
    TransferAborted,
    TransferError,
    TransferRefused,
    TransferState,
    TransferTimeout,
)
from prfaas.kvtransfer.segments import RangeSet, SegmentMap
from prfaas.kvtransfer.wire import LayerLayout, digest_term, layer_nbytes

_MASK64 = (1 << 64) - 1


class ReceiveHandle:
    """Returned by `KVReceiver.expect`; awaited by the engine.

    `wait_layer(i)` / `wait_done()` raise a TransferError subclass on failure, abort or deadline.
    """

    def __init__(
        self,
        transfer_id: str,
        layout: list[LayerLayout],
        dest_segments: list[list[memoryview]],
        deadline_s: float,
        on_terminal: Callable[[ReceiveHandle], None],
        on_abort: Callable[[ReceiveHandle, str], None] | None = None,
    ) -> None:
        if len(dest_segments) != len(layout):
            raise ValueError(f"{len(dest_segments)} destination layers for {len(layout)} in layout")
        maps = [SegmentMap(segs) for segs in dest_segments]
        for i, (m, layer) in enumerate(zip(maps, layout, strict=True)):
            if m.nbytes != layer_nbytes(layer):
                raise ValueError(
                    f"layer {i}: {m.nbytes} destination bytes, layout {layer_nbytes(layer)}"
                )
            if any(seg.readonly for seg in m.segments):
                raise ValueError(f"layer {i}: destination segments must be writable")
        self.transfer_id = transfer_id
        self.layout = layout
        self.metadata: bytes = b""
        self.state = TransferState.PENDING
        self.error: TransferError | None = None
        self.trailer: bytes | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self.bytes_received = 0
        self.opened = False
        self._maps: list[SegmentMap] | None = maps
        self._ranges = [RangeSet() for _ in layout]
        self._layer_events = [asyncio.Event() for _ in layout]
        self._done_event = asyncio.Event()
        self._digest = 0
        self._done_msg: tuple[int, int, bytes] | None = None
        self._on_terminal = on_terminal
        self._on_abort = on_abort
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(deadline_s, self._deadline)
        for i, layer in enumerate(layout):
            if layer_nbytes(layer) == 0:
                self._layer_events[i].set()

    @property
    def dest(self) -> list[SegmentMap] | None:
        """Destination maps while writable; None once terminal (no reference is kept)."""
        return self._maps

    def begin(self, layout: list[LayerLayout], metadata: bytes) -> None:
        """The sender's OPEN arrived; its declared layout must equal the expected one."""
        if self.opened:
            raise TransferRefused(f"duplicate open of {self.transfer_id}")
        if [list(map(tuple, layer)) for layer in layout] != [
            list(map(tuple, la)) for la in self.layout
        ]:
            raise TransferRefused(
                f"layout of {self.transfer_id} differs from the expected one: "
                + _first_difference(layout, self.layout)
            )
        self.opened = True
        self.metadata = metadata
        self.state = TransferState.TRANSFERRING

    def dest_slices(self, layer: int, offset: int, length: int) -> list[memoryview]:
        """Where the payload of a chunk goes; raises TransferError if it cannot be accepted."""
        if self._maps is None:
            raise TransferError(f"{self.transfer_id} is {self.state.value}")
        if not self.opened:
            raise TransferRefused(f"chunk before open of {self.transfer_id}")
        if not 0 <= layer < len(self._maps):
            raise TransferRefused(f"layer {layer} out of range")
        try:
            return self._maps[layer].slices(offset, length)
        except ValueError as exc:
            raise TransferRefused(str(exc)) from None

    def chunk_received(
        self, layer: int, offset: int, length: int, expected: int, actual: int
    ) -> None:
        """A chunk's payload is in place; `actual` is the xxh3_64 computed over the written bytes."""
        if self.state.terminal:
            return
        if expected != actual:
            self.fail(ChecksumError(f"chunk checksum mismatch in layer {layer} at {offset}"))
            return
        if not self._ranges[layer].add(offset, offset + length):
            self.fail(TransferRefused(f"overlapping chunk in layer {layer} at {offset}"))
            return
        self.bytes_received += length
        self._digest = (self._digest + digest_term(layer, offset, length, expected)) & _MASK64
        if self._ranges[layer].covered == layer_nbytes(self.layout[layer]):
            self._layer_events[layer].set()
        self._try_complete()

    def layer_done(self, layer: int, nbytes: int) -> None:
        if not 0 <= layer < len(self.layout) or nbytes != layer_nbytes(self.layout[layer]):
            self.fail(TransferRefused(f"layer-done mismatch for layer {layer}"))

    def done_received(self, digest: int, total_bytes: int, trailer: bytes) -> None:
        if self._done_msg is not None:
            self.fail(TransferRefused("duplicate transfer-done"))
            return
        self._done_msg = (digest, total_bytes, trailer)
        self._try_complete()

    def _try_complete(self) -> None:
        if self._done_msg is None or self.state.terminal:
            return
        if not all(ev.is_set() for ev in self._layer_events):
            return
        digest, total, trailer = self._done_msg
        if total != self.bytes_received or digest != self._digest:
            self.fail(ChecksumError(f"transfer digest mismatch for {self.transfer_id}"))
            return
        self.trailer = trailer
        self._finish(TransferState.DONE, None)

    def fail(self, error: TransferError, state: TransferState = TransferState.FAILED) -> None:
        """Move to a terminal failure state (idempotent); wakes every waiter with `error`."""
        if not self.state.terminal:
            self._finish(state, error)

    def abort(self, reason: str) -> None:
        """Abort from the receiving side; the sender is told (ABORT frame) where connected."""
        if self.state.terminal:
            return
        self.fail(TransferAborted(f"aborted by receiver: {reason}"), TransferState.ABORTED)
        if self._on_abort is not None:
            self._on_abort(self, reason)

    def _deadline(self) -> None:
        self._timer = None
        self.fail(TransferTimeout(f"{self.transfer_id} not done within its deadline"))

    def _finish(self, state: TransferState, error: TransferError | None) -> None:
        self.state = state
        self.error = error
        self.finished_at = time.monotonic()
        self._maps = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for ev in self._layer_events:
            ev.set()
        self._done_event.set()
        self._on_terminal(self)

    async def wait_layer(self, i: int) -> None:
        """Returns once layer i is fully received and checksummed; raises on failure."""
        await self._layer_events[i].wait()
        if self.error is not None:
            raise self.error

    async def wait_done(self) -> bytes:
        """Returns the sender's trailer once every byte arrived and the digest matched."""
        await self._done_event.wait()
        if self.error is not None:
            raise self.error
        assert self.trailer is not None
        return self.trailer


def _first_difference(got: list[LayerLayout], expected: list[LayerLayout]) -> str:
    """Names the first differing buffer, so a refused stream says why (e.g. a sender shipping an
    encoded dtype such as "kvq1:fp8:g64:bfloat16" to a receiver that expects "bfloat16")."""
    if len(got) != len(expected):
        return f"sender declares {len(got)} layers, receiver expects {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if len(g) != len(e):
            return f"layer {i}: sender declares {len(g)} buffers, receiver expects {len(e)}"
        for gb, eb in zip(g, e, strict=True):
            if tuple(gb) != tuple(eb):
                return (
                    f"layer {i}: sender declares {gb[0]} as {gb[1]} ({gb[2]} bytes), "
                    f"receiver expects {eb[0]} as {eb[1]} ({eb[2]} bytes)"
                )
    return "no difference found"  # pragma: no cover - called only when the layouts differ
