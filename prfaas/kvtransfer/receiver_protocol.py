"""Per-connection frame parser of the TCP receiver (an asyncio BufferedProtocol).

`get_buffer` hands the event loop the destination memory of the chunk being received, so payload
bytes go from the socket straight into the engine's cache buffers (recv_into, no copy). The xxh3
checksum is updated over exactly the bytes just written. Payload of a chunk that cannot be
accepted (unknown transfer, transfer already failed) is read into a small scratch buffer and
dropped, so memory use per connection is bounded by MAX_META + the scratch size.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import xxhash

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import TransferAborted, TransferError, TransferState

if TYPE_CHECKING:
    from prfaas.kvtransfer.receive_handle import ReceiveHandle
    from prfaas.kvtransfer.tcp_receiver import TcpReceiver

_SCRATCH = 64 << 10
_HEADER, _META, _PAYLOAD, _DISCARD = range(4)


class ReceiverProtocol(asyncio.BufferedProtocol):
    def __init__(self, receiver: TcpReceiver, session: bytes) -> None:
        self.receiver = receiver
        self.session = session
        self.transport: asyncio.Transport | None = None
        self.bytes_received = 0
        self._mode = _HEADER
        self._buf = bytearray(wire.HEADER_SIZE)
        self._need = wire.HEADER_SIZE
        self._got = 0
        self._kind = wire.Kind.HELLO
        self._scratch = bytearray(_SCRATCH)
        self._discard_left = 0
        self._chunk: wire.Chunk | None = None
        self._handle: ReceiveHandle | None = None
        self._slices: list[memoryview] = []
        self._slice_idx = 0
        self._slice_pos = 0
        self._hasher = xxhash.xxh3_64()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport writes and aborts; uvloop's does without subclassing
        # asyncio.Transport, so this is a cast, not an isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_payload_target()
        self.receiver.connection_closed(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _drop_payload_target(self) -> None:
        self._handle = None
        self._slices = []

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._mode == _PAYLOAD:
            if self._handle is not None and self._handle.dest is not None:
                return self._slices[self._slice_idx][self._slice_pos :]
            # The transfer ended mid-chunk: drop the rest of the payload, keep no reference.
            self._enter_discard(self._remaining_payload())
        if self._mode == _DISCARD:
            return memoryview(self._scratch)[: min(self._discard_left, _SCRATCH)]
        return memoryview(self._buf)[self._got : self._need]

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        try:
            self._advance(nbytes)
        except wire.WireError as exc:
            self.receiver.log_protocol_error(self, exc)
            self._drop_payload_target()
            if self.transport is not None:
                self.transport.abort()

    def _remaining_payload(self) -> int:
        done = sum(len(s) for s in self._slices[: self._slice_idx]) + self._slice_pos
        assert self._chunk is not None
        return self._chunk.length - done

    def _enter_discard(self, n: int) -> None:
        self._drop_payload_target()
        self._discard_left = n
        self._mode = _DISCARD
        if n == 0:
            self._expect_header()

    def _expect_header(self) -> None:
        self._mode, self._need, self._got = _HEADER, wire.HEADER_SIZE, 0
        if len(self._buf) != wire.HEADER_SIZE:
            self._buf = bytearray(wire.HEADER_SIZE)

    def _advance(self, n: int) -> None:
        if self._mode == _PAYLOAD:
            seg = self._slices[self._slice_idx]
            self._hasher.update(seg[self._slice_pos : self._slice_pos + n])
            self._slice_pos += n
            if self._slice_pos == len(seg):
                self._slice_idx += 1
                self._slice_pos = 0
                if self._slice_idx == len(self._slices):
                    self._chunk_complete()
            return
        if self._mode == _DISCARD:
            self._discard_left -= n
            if self._discard_left == 0:
                self._expect_header()
            return
        self._got += n
        if self._got < self._need:
            return
        if self._mode == _HEADER:
            self._kind, meta_len = wire.parse_header(self._buf)
            self._mode, self._need, self._got = _META, meta_len, 0
            self._buf = bytearray(meta_len)
            if meta_len == 0:
                self._frame_complete()
        else:
            self._frame_complete()

    def _frame_complete(self) -> None:
        kind, meta = self._kind, self._buf
        msg = wire.decode(kind, meta)
        self._expect_header()
        if kind == wire.Kind.CHUNK:
            assert isinstance(msg, wire.Chunk)
            self._start_chunk(msg)
        elif kind == wire.Kind.OPEN:
            assert isinstance(msg, wire.Open)
            self.receiver.handle_open(self, msg)
        elif kind == wire.Kind.LAYER_DONE:
            assert isinstance(msg, wire.LayerDone)
            handle = self._lookup(msg.tid)
            if handle is not None:
                handle.layer_done(msg.layer, msg.nbytes)
        elif kind == wire.Kind.DONE:
            assert isinstance(msg, wire.Done)
            handle = self._lookup(msg.tid)
            if handle is not None:
                handle.done_received(msg.digest, msg.total_bytes, msg.trailer)
        elif kind == wire.Kind.ABORT:
            assert isinstance(msg, wire.Abort)
            handle = self.receiver.owned(msg.tid, self.session)
            if handle is None:
                self.receiver.abort_pending(msg.tid, self.session)
            else:
                handle.fail(
                    TransferAborted(f"aborted by sender: {msg.reason}"), TransferState.ABORTED
                )
        else:
            raise wire.WireError(f"unexpected {kind.name} frame after handshake")

    def _lookup(self, tid: str) -> ReceiveHandle | None:
        handle = self.receiver.owned(tid, self.session)
        if handle is None:
            self.send(wire.encode(wire.Abort(tid, "unknown transfer")))
        return handle

    def _start_chunk(self, chunk: wire.Chunk) -> None:
        self._chunk = chunk
        handle = self._lookup(chunk.tid)
        slices: list[memoryview] = []
        if handle is not None:
            try:
                slices = handle.dest_slices(chunk.layer, chunk.offset, chunk.length)
            except TransferError as exc:
                handle.fail(exc)
                handle = None
        if handle is None or chunk.length == 0:
            self._enter_discard(chunk.length)
            if handle is not None:
                handle.chunk_received(
                    chunk.layer, chunk.offset, 0, chunk.checksum, wire.checksum([])
                )
            return
        self._handle, self._slices = handle, slices
        self._slice_idx = self._slice_pos = 0
        self._hasher.reset()
        self._mode = _PAYLOAD

    def _chunk_complete(self) -> None:
        handle, chunk = self._handle, self._chunk
        assert handle is not None and chunk is not None
        self._drop_payload_target()
        self._expect_header()
        handle.chunk_received(
            chunk.layer, chunk.offset, chunk.length, chunk.checksum, self._hasher.intdigest()
        )
