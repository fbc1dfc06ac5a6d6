"""All connections from this sender to one receiver, and the scheduler that feeds them.

N authenticated connections (one session) are opened once and reused by every transfer to the
peer. Each connection has a writer task that takes the next item: control frames first, then one
chunk from the next transfer in round-robin order (fair sharing; chunks of one transfer are thus
striped over all connections). A reader task per connection handles OPEN_OK / ACK / ABORT. Any
connection error breaks the whole link: its transfers fail with PeerLost and the sender opens a
fresh link for the next transfer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import Peer, PeerLost, TransferError, TransferRefused
from prfaas.kvtransfer.conn import RawConn, TlsConn, start_tls
from prfaas.kvtransfer.handshake import client_handshake
from prfaas.kvtransfer.send_handle import PendingChunk, SendHandle
from prfaas.kvtransfer.telemetry import PeerSnapshot, PeerStats


class PeerLink:
    def __init__(
        self,
        peer: Peer,
        *,
        secret: bytes,
        identity: str,
        num_connections: int,
        max_queued_bytes: int,
        connect_timeout_s: float,
        sndbuf: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.peer = peer
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or str(peer[0])
        self.secret, self.identity = secret, identity
        self.num_connections = num_connections
        self.max_queued_bytes = max_queued_bytes
        self.connect_timeout_s = connect_timeout_s
        self.sndbuf = sndbuf
        self.session = os.urandom(wire.SESSION_SIZE)
        self.broken: TransferError | None = None
        self.stats = PeerStats(f"{peer[0]}:{peer[1]}")
        self.handles: dict[str, SendHandle] = {}
        self._conns: list[RawConn | TlsConn] = []
        self._control: deque[bytes] = deque()
        self._ready: deque[SendHandle] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._spawn(self._connect())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.fail_all(PeerLost(f"link to {self.stats.peer} failed: {task.exception()!r}"))

    @property
    def live_tasks(self) -> int:
        return len(self._tasks)

    def register(self, handle: SendHandle) -> None:
        if self.broken is not None:
            handle.fail(self.broken)
            return
        if handle.transfer_id in self.handles:
            handle.fail(TransferRefused(f"transfer {handle.transfer_id} already open to this peer"))
            return
        self.handles[handle.transfer_id] = handle
        self._push_control(
            wire.encode(wire.Open(handle.transfer_id, handle.layout, handle.metadata))
        )

    def _push_control(self, data: bytes) -> None:
        self._control.append(data)
        self._wake.set()

    # ChunkLink, called by SendHandle.
    def chunks_ready(self, handle: SendHandle) -> None:
        self._count_queued()
        if self.stats.queued_bytes > self.max_queued_bytes:
            self._drained.clear()
        if handle.has_chunks() and handle not in self._ready:
            self._ready.append(handle)
            self._wake.set()

    def send_layer_done(self, handle: SendHandle, layer: int) -> None:
        nbytes = wire.layer_nbytes(handle.layout[layer])
        self._push_control(wire.encode(wire.LayerDone(handle.transfer_id, layer, nbytes)))

    def send_done(self, handle: SendHandle) -> None:
        assert handle.trailer is not None
        msg = wire.Done(handle.transfer_id, handle.digest, handle.bytes_sent, handle.trailer)
        self._push_control(wire.encode(msg))

    def send_abort(self, handle: SendHandle, reason: str) -> None:
        self._push_control(wire.encode(wire.Abort(handle.transfer_id, reason)))

    def released(self, handle: SendHandle, unsent_bytes: int) -> None:
        if self.handles.get(handle.transfer_id) is handle:
            del self.handles[handle.transfer_id]
        self._update_queued()
        ok = handle.error is None
        self.stats.on_transfer_end(ok, time.monotonic() - handle.started_at)

    async def drained(self) -> None:
        await self._drained.wait()

    def _update_queued(self) -> None:
        self._count_queued()
        if self.stats.queued_bytes <= self.max_queued_bytes:
            self._drained.set()

    def _count_queued(self) -> None:
        self.stats.queued_bytes = sum(h.queued_bytes for h in self.handles.values())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()

        async def one() -> RawConn | TlsConn:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await loop.sock_connect(sock, self.peer)
                tls = self.ssl_context is not None
                await client_handshake(
                    sock, self.secret, self.identity, self.session, self.connect_timeout_s, tls=tls
                )
                if self.ssl_context is not None:
                    return await start_tls(
                        sock, self.ssl_context, self.server_hostname, self.connect_timeout_s
                    )
            except BaseException:
                sock.close()
                raise
            return RawConn(sock)

        results = await asyncio.gather(
            *(one() for _ in range(self.num_connections)), return_exceptions=True
        )
        conns = [r for r in results if isinstance(r, RawConn | TlsConn)]
        errors = [r for r in results if not isinstance(r, RawConn | TlsConn)]
        if errors or self.broken is not None:
            for c in conns:
                c.close()
            err = errors[0] if errors else self.broken
            if isinstance(err, TransferRefused):
                self.fail_all(err)
            else:
                self.fail_all(PeerLost(f"cannot connect to {self.stats.peer}: {err!r}"))
            return
        self._conns = conns
        for conn in conns:
            self._spawn(self._writer(conn))
            self._spawn(self._reader(conn))

    async def _next(self) -> bytes | PendingChunk:
        while True:
            if self._control:
                return self._control.popleft()
            while self._ready:
                handle = self._ready.popleft()
                chunk = handle.pop_chunk()
                if chunk is None:
                    continue
                if handle.has_chunks():
                    self._ready.append(handle)
                return chunk
            self._wake.clear()
            await self._wake.wait()

    async def _writer(self, conn: RawConn | TlsConn) -> None:
        while True:
            item = await self._next()
            if isinstance(item, bytes):
                await conn.send([memoryview(item)])
                continue
            chk = wire.checksum(item.parts)
            header = wire.encode(
                wire.Chunk(item.handle.transfer_id, item.layer, item.offset, item.length, chk)
            )
            self.stats.bytes_in_flight += item.length
            try:
                await conn.send([memoryview(header), *item.parts])
            finally:
                self.stats.bytes_in_flight -= item.length
            self.stats.on_sent(item.length)
            item.handle.chunk_written(item, chk)
            self._update_queued()

    async def _reader(self, conn: RawConn | TlsConn) -> None:
        while True:
            kind, meta = await conn.read_frame()
            msg = wire.decode(kind, meta)
            if kind == wire.Kind.ABORT:
                assert isinstance(msg, wire.Abort)
                if not msg.tid:
                    raise ConnectionError(f"receiver closed the connection: {msg.reason}")
                handle = self.handles.get(msg.tid)
                if handle is not None:
                    handle.refused_or_aborted(msg.reason)
            elif kind in (wire.Kind.OPEN_OK, wire.Kind.ACK):
                handle = self.handles.get(str(msg))
                if handle is None:
                    continue
                if kind == wire.Kind.OPEN_OK:
                    handle.mark_opened()
                else:
                    handle.complete()
            else:
                raise wire.WireError(f"unexpected {kind.name} from receiver")

    def fail_all(self, error: TransferError) -> None:
        """Break the link: every transfer fails with `error`, connections and tasks end."""
        if self.broken is None:
            self.broken = error
        for handle in list(self.handles.values()):
            handle.fail(error)
        for conn in self._conns:
            conn.close()
        self._conns = []
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def close(self) -> None:
        self.fail_all(PeerLost("sender closed"))
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def snapshot(self) -> PeerSnapshot:
        # Backpressure counts every queued byte (each pins a buffer); the held ones wait for the
        # receiver's OPEN_OK (a decode worker admits a request while its prefill already runs),
        # not for the line. Counted here, once per telemetry sample, not on every chunk.
        held = sum(h.queued_bytes for h in self.handles.values() if not h.opened)
        return self.stats.snapshot([c.tcp_socket for c in self._conns], len(self.handles), held)
