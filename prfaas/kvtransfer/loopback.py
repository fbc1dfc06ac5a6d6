"""In-process implementation of KVSender/KVReceiver for tests and single-process demos.

A `LoopbackNetwork` maps addresses to receivers. Chunks are copied from the producer's buffers
into the destination buffers on the event loop (one copy, as the kernel would do), with the same
checksums, state machine, refusals and ownership rules as the TCP implementation.
"""

from __future__ import annotations

import asyncio
import weakref

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import (
    KVReceiver,
    KVSender,
    Peer,
    PeerLost,
    TransferAborted,
    TransferRefused,
    TransferState,
)
from prfaas.kvtransfer.receive_handle import ReceiveHandle
from prfaas.kvtransfer.send_handle import SendHandle


def copy_parts(src: list[memoryview], dst: list[memoryview]) -> None:
    """Copy the concatenation of `src` into that of `dst` (equal totals, any boundaries)."""
    si = di = spos = dpos = 0
    while si < len(src) and di < len(dst):
        n = min(len(src[si]) - spos, len(dst[di]) - dpos)
        dst[di][dpos : dpos + n] = src[si][spos : spos + n]
        spos, dpos = spos + n, dpos + n
        if spos == len(src[si]):
            si, spos = si + 1, 0
        if dpos == len(dst[di]):
            di, dpos = di + 1, 0


class LoopbackNetwork:
    def __init__(self) -> None:
        self.receivers: dict[Peer, LoopbackReceiver] = {}


class LoopbackReceiver(KVReceiver):
    def __init__(self, network: LoopbackNetwork, address: Peer = ("loopback", 1)) -> None:
        self.network, self.address = network, address
        network.receivers[address] = self
        self._handles: dict[str, ReceiveHandle] = {}
        self._senders: dict[str, SendHandle] = {}
        self._all: weakref.WeakSet[ReceiveHandle] = weakref.WeakSet()

    def expect(
        self,
        transfer_id: str,
        layout: list[wire.LayerLayout],
        dest_segments: list[list[memoryview]],
        deadline_s: float,
        *,
        sender_identity: str | None = None,
    ) -> ReceiveHandle:
        if transfer_id in self._handles:
            raise TransferRefused(f"transfer {transfer_id} is already expected")
        handle = ReceiveHandle(transfer_id, layout, dest_segments, deadline_s, self._terminal)
        self._handles[transfer_id] = handle
        self._all.add(handle)
        return handle

    def open_from(self, sender: SendHandle) -> ReceiveHandle:
        handle = self._handles.get(sender.transfer_id)
        if handle is None:
            raise TransferRefused("unknown transfer")
        if sender.transfer_id in self._senders:
            raise TransferRefused("duplicate open")
        try:
            handle.begin(sender.layout, sender.metadata)
        except TransferRefused as exc:
            handle.fail(exc)
            raise
        self._senders[sender.transfer_id] = sender
        return handle

    def _terminal(self, handle: ReceiveHandle) -> None:
        self._handles.pop(handle.transfer_id, None)
        sender = self._senders.pop(handle.transfer_id, None)
        if sender is None:
            return
        if handle.state == TransferState.DONE:
            sender.complete()
        elif handle.error is not None:
            sender.refused_or_aborted(str(handle.error))

    def leak_check(self) -> dict[str, int]:
        return {
            "transfers": len(self._handles),
            "pinned_buffers": sum(1 for h in self._all if h.dest is not None),
            "tasks": 0,
        }

    async def close(self) -> None:
        for handle in list(self._handles.values()):
            handle.fail(PeerLost("receiver closed"))
        self.network.receivers.pop(self.address, None)


class _LoopbackLink:
    """ChunkLink of one loopback transfer: copies chunks when the loop gets to them."""

    def __init__(self, sender: LoopbackSender, peer: Peer) -> None:
        self.sender, self.peer = sender, peer
        self.rx: ReceiveHandle | None = None
        self._scheduled = False

    def start(self, handle: SendHandle) -> None:
        receiver = self.sender.network.receivers.get(self.peer)
        try:
            if receiver is None:
                raise PeerLost(f"no receiver at {self.peer}")
            self.rx = receiver.open_from(handle)
            if handle.state.terminal:
                # The producer aborted before the open reached the receiver.
                self.send_abort(handle, str(handle.error))
                return
        except (TransferRefused, PeerLost) as exc:
            handle.fail(exc)
            return
        handle.mark_opened()

    def chunks_ready(self, handle: SendHandle) -> None:
        if not self._scheduled and handle.has_chunks():
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._pump, handle)

    def _pump(self, handle: SendHandle) -> None:
        self._scheduled = False
        # One chunk per loop iteration, so concurrent transfers interleave.
        chunk = handle.pop_chunk()
        if chunk is None or self.rx is None:
            return
        chk = wire.checksum(chunk.parts)
        try:
            dst = self.rx.dest_slices(chunk.layer, chunk.offset, chunk.length)
        except Exception:
            dst = None
        if dst is not None:
            copy_parts(chunk.parts, dst)
            self.rx.chunk_received(chunk.layer, chunk.offset, chunk.length, chk, wire.checksum(dst))
        handle.chunk_written(chunk, chk)
        self.chunks_ready(handle)

    def send_layer_done(self, handle: SendHandle, layer: int) -> None:
        pass

    def send_done(self, handle: SendHandle) -> None:
        if self.rx is not None and handle.trailer is not None:
            self.rx.done_received(handle.digest, handle.bytes_sent, handle.trailer)

    def send_abort(self, handle: SendHandle, reason: str) -> None:
        if self.rx is not None:
            self.rx.fail(TransferAborted(f"aborted by sender: {reason}"), TransferState.ABORTED)
        self.rx = None

    def released(self, handle: SendHandle, unsent_bytes: int) -> None:
        self.sender.open_handles.discard(handle)
        # A sender abort still has to reach the receiver (send_abort runs right after this).
        if handle.state != TransferState.ABORTED:
            self.rx = None

    async def drained(self) -> None:
        return None


class LoopbackSender(KVSender):
    def __init__(self, network: LoopbackNetwork, *, chunk_mib: float = 1.0) -> None:
        self.network = network
        self.chunk_bytes = max(1, int(chunk_mib * (1 << 20)))
        self.open_handles: set[SendHandle] = set()

    def open(
        self, peer: Peer, transfer_id: str, layout: list[wire.LayerLayout], metadata: bytes = b""
    ) -> SendHandle:
        host, port = peer  # a list (decoded JSON) works too; receivers are keyed by tuple
        link = _LoopbackLink(self, (host, port))
        handle = SendHandle(transfer_id, layout, metadata, link, self.chunk_bytes)
        self.open_handles.add(handle)
        asyncio.get_running_loop().call_soon(link.start, handle)
        return handle

    def leak_check(self) -> dict[str, int]:
        return {
            "transfers": len(self.open_handles),
            "pinned_buffers": sum(h.queued_bytes for h in self.open_handles),
            "tasks": 0,
        }

    async def close(self) -> None:
        for handle in list(self.open_handles):
            handle.fail(PeerLost("sender closed"))
