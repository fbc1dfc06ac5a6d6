"""Per-connection frame parser of the TCP receiver (an asyncio BufferedProtocol).

`get_buffer` hands the event loop the destination memory of the chunk being received, so payload
bytes go from the socket straight into the engine's cache buffers (recv_into, no copy). The xxh3
checksum is updated over exactly the bytes just written (still in cache) and compared with the
chunk's trailer. Payload of a chunk that cannot be
accepted (unknown transfer, transfer already failed) is read into a small scratch buffer and
dropped, so memory use per connection is bounded by MAX_META + the scratch size.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import xxhash

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import TransferAborted, TransferError, TransferState

if TYPE_CHECKING:
    from prfaas.kvtransfer.receive_handle import ReceiveHandle
    from prfaas.kvtransfer.tcp_receiver import TcpReceiver

_SCRATCH = 64 << 10
# Header/metadata/trailer reads go into this small staging buffer, so one recv usually takes a
# frame's header, its metadata and the previous chunk's trailer together (bytes of a following
# payload that land here are copied into the destination: at most _STAGE per chunk).
_STAGE = 4096
_HEADER, _META, _PAYLOAD, _TRAILER, _DISCARD = range(5)


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
        self._stage = memoryview(bytearray(_STAGE))
        self._staged = False
        self._discard_left = 0
        self._chunk: wire.Chunk | None = None
        self._handle: ReceiveHandle | None = None
        self._slices: list[memoryview] = []
        self._slice_idx = 0
        self._slice_pos = 0
        self._hasher = xxhash.xxh3_64()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop_payload_target()
        self.receiver.connection_closed(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _drop_payload_target(self) -> None:
        self._handle = None
        self._slices = []

    def _payload_live(self) -> bool:
        if self._handle is not None and self._handle.dest is not None:
            return True
        # The transfer ended mid-chunk: drop the rest of the payload, keep no reference.
        self._enter_discard(self._remaining_payload() + wire.TRAILER_SIZE)
        return False

    def get_buffer(self, sizehint: int) -> memoryview:
        self._staged = False
        if self._mode == _PAYLOAD and self._payload_live():
            # Straight into the destination: the whole rest of the current segment.
            return self._slices[self._slice_idx][self._slice_pos :]
        if self._mode == _DISCARD and self._discard_left > _STAGE:
            return memoryview(self._scratch)[: min(self._discard_left, _SCRATCH)]
        self._staged = True
        return self._stage

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        try:
            if self._staged:
                self._feed(self._stage[:nbytes])
            elif self._mode == _PAYLOAD:
                self._payload_written(nbytes)
            else:
                self._discarded(nbytes)
        except wire.WireError as exc:
            self.receiver.log_protocol_error(self, exc)
            self._drop_payload_target()
            if self.transport is not None:
                self.transport.abort()

    def _feed(self, data: memoryview) -> None:
        """Consume bytes that landed in the staging buffer, whatever the frames in them."""
        while len(data):
            mode = self._mode
            if mode == _PAYLOAD and self._payload_live():
                seg = self._slices[self._slice_idx]
                k = min(len(seg) - self._slice_pos, len(data))
                seg[self._slice_pos : self._slice_pos + k] = data[:k]
                self._payload_written(k)
            elif mode == _DISCARD:
                k = min(self._discard_left, len(data))
                self._discarded(k)
            elif mode != _PAYLOAD:
                k = min(self._need - self._got, len(data))
                self._buf[self._got : self._got + k] = data[:k]
                self._got += k
                if self._got == self._need:
                    self._field_complete()
            else:
                continue  # _payload_live switched to discard
            data = data[k:]

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

    def _discarded(self, n: int) -> None:
        self._discard_left -= n
        if self._discard_left == 0:
            self._expect_header()

    def _expect(self, mode: int, n: int) -> None:
        self._mode, self._need, self._got = mode, n, 0
        if len(self._buf) != n:
            self._buf = bytearray(n)

    def _expect_header(self) -> None:
        self._expect(_HEADER, wire.HEADER_SIZE)

    def _payload_written(self, n: int) -> None:
        """n payload bytes were just written at the cursor: hash them (cache-hot) and advance."""
        seg = self._slices[self._slice_idx]
        self._hasher.update(seg[self._slice_pos : self._slice_pos + n])
        self._slice_pos += n
        if self._slice_pos == len(seg):
            self._slice_idx += 1
            self._slice_pos = 0
            if self._slice_idx == len(self._slices):
                self._expect(_TRAILER, wire.TRAILER_SIZE)

    def _field_complete(self) -> None:
        if self._mode == _HEADER:
            self._kind, meta_len = wire.parse_header(self._buf)
            self._expect(_META, meta_len)
            if meta_len == 0:
                self._frame_complete()
        elif self._mode == _TRAILER:
            self._chunk_complete(wire.TRAILER.unpack(self._buf)[0])
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
        self._hasher.reset()
        if handle is None:
            self._enter_discard(chunk.length + wire.TRAILER_SIZE)
            return
        self._handle, self._slices = handle, slices
        self._slice_idx = self._slice_pos = 0
        if chunk.length == 0:
            self._expect(_TRAILER, wire.TRAILER_SIZE)
        else:
            self._mode = _PAYLOAD

    def _chunk_complete(self, expected: int) -> None:
        handle, chunk = self._handle, self._chunk
        assert chunk is not None
        self._drop_payload_target()
        self._expect_header()
        if handle is not None:
            handle.chunk_received(
                chunk.layer, chunk.offset, chunk.length, expected, self._hasher.intdigest()
            )
