"""TCP receiver: listens, authenticates senders, and routes their frames into expected transfers.

A sender's connections share one session id (HELLO); a transfer belongs to the session whose OPEN
was accepted, and only that session may write into it. If any connection of a session breaks,
that session's unfinished transfers fail with PeerLost (a striped chunk may have been lost).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import weakref
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import KVReceiver, PeerLost, TransferRefused, TransferState
from prfaas.kvtransfer.handshake import FLAG_TLS, server_handshake
from prfaas.kvtransfer.receive_handle import ReceiveHandle
from prfaas.kvtransfer.receiver_protocol import ReceiverProtocol

log = logging.getLogger(__name__)

_ENDED_REMEMBERED = 4096
"""How many ended transfer ids a receiver remembers (to refuse their late OPENs at once)."""


class TcpReceiver(KVReceiver):
    """Create on the event loop, `await start()`, then `expect(...)` per incoming transfer."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        secret: bytes,
        identity: str = "receiver",
        handshake_timeout_s: float = 5.0,
        open_grace_s: float = 60.0,
        rcvbuf: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        require_tls: bool | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.secret, self.identity = secret, identity
        self.handshake_timeout_s = handshake_timeout_s
        # An OPEN that arrives before the engine's expect() waits this long for it. The router
        # starts a prefill together with the decode admission (router/two_worker_handshake.py), so
        # an OPEN may wait out the whole admission (up to the router's 30 s admit timeout, e.g.
        # while the decode worker waits for memory); a sender that gives up aborts it sooner.
        self.open_grace_s = open_grace_s
        self.rcvbuf = rcvbuf
        # TLS (server side) for senders that ask for it; required by default when configured.
        # Over TLS, payload is decrypted straight into the destination buffers (no second copy).
        self.ssl_context = ssl_context
        self.require_tls = ssl_context is not None if require_tls is None else require_tls
        if self.require_tls and ssl_context is None:
            raise ValueError("require_tls needs an ssl_context")
        self.protocol_errors = 0
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._handles: dict[str, ReceiveHandle] = {}
        self._owner: dict[str, bytes] = {}
        # Replaced on every expect(); OPENs waiting for their expect() wait on the current one.
        self._expected = asyncio.Event()
        self._sessions: dict[bytes, set[ReceiverProtocol]] = {}
        # (session, tid) of OPENs waiting for expect(); True once the sender aborted it.
        self._pending_open: dict[tuple[bytes, str], bool] = {}
        # Recently ended transfers (done, failed, aborted): a late OPEN for one is refused at once
        # instead of waiting out the grace for an expect() that will not come again.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._all_handles: weakref.WeakSet[ReceiveHandle] = weakref.WeakSet()

    @property
    def address(self) -> tuple[str, int]:
        assert self._sock is not None, "call start() first"
        host, port = self._sock.getsockname()[:2]
        return host, port

    async def start(self) -> TcpReceiver:
        sock = socket.create_server((self.host, self.port), reuse_port=False, backlog=128)
        sock.setblocking(False)
        self._sock = sock
        self._accept_task = asyncio.create_task(self._accept_loop())
        return self

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
        self._all_handles.add(handle)
        self._wake_pending()
        return handle

    def owned(self, tid: str, session: bytes) -> ReceiveHandle | None:
        """The live transfer `tid` if `session` opened it."""
        handle = self._handles.get(tid)
        if handle is None or self._owner.get(tid) != session:
            return None
        return handle

    def handle_open(self, proto: ReceiverProtocol, msg: wire.Open) -> None:
        # Accepted at once when expected (a following ABORT in the same read then finds it owned);
        # otherwise a task waits up to open_grace_s for the engine's expect().
        if msg.tid in self._handles:
            self._accept_open(proto, msg)
        elif msg.tid in self._ended:
            proto.send(wire.encode(wire.Abort(msg.tid, "transfer already ended")))
        else:
            self._pending_open[(proto.session, msg.tid)] = False
            self._spawn(self._open(proto, msg))

    def abort_pending(self, tid: str, session: bytes) -> None:
        """The sender aborted a transfer whose OPEN still waits for expect()."""
        if (session, tid) in self._pending_open:
            self._pending_open[(session, tid)] = True
            self._wake_pending()

    def _wake_pending(self) -> None:
        """Wake the OPENs waiting for expect() (each checks its own transfer again)."""
        self._expected.set()
        self._expected = asyncio.Event()

    async def _open(self, proto: ReceiverProtocol, msg: wire.Open) -> None:
        key = (proto.session, msg.tid)
        try:
            async with asyncio.timeout(self.open_grace_s):
                while not (msg.tid in self._handles or msg.tid in self._ended
                           or self._pending_open[key]):  # fmt: skip
                    await self._expected.wait()
        except TimeoutError:
            proto.send(wire.encode(wire.Abort(msg.tid, "unknown transfer")))
            return
        finally:
            aborted = self._pending_open.pop(key, False)
        if aborted:
            return
        if msg.tid in self._handles:
            self._accept_open(proto, msg)
        else:
            proto.send(wire.encode(wire.Abort(msg.tid, "transfer already ended")))

    def _accept_open(self, proto: ReceiverProtocol, msg: wire.Open) -> None:
        handle = self._handles[msg.tid]
        try:
            handle.begin(msg.layout, msg.metadata)
        except TransferRefused as exc:
            # A duplicate OPEN is refused without touching the transfer that owns the id.
            proto.send(wire.encode(wire.Abort(msg.tid, str(exc))))
            if msg.tid not in self._owner:
                handle.fail(exc)
            return
        self._owner[msg.tid] = proto.session
        proto.send(wire.encode_tid(wire.Kind.OPEN_OK, msg.tid))

    def _send_to_session(self, tid: str, data: bytes) -> None:
        session = self._owner.get(tid)
        for proto in self._sessions.get(session, ()) if session else ():
            proto.send(data)
            return

    def _terminal(self, handle: ReceiveHandle) -> None:
        tid = handle.transfer_id
        if handle.state == TransferState.DONE:
            self._send_to_session(tid, wire.encode_tid(wire.Kind.ACK, tid))
        elif handle.error is not None:
            # Tell the sender (harmless if it aborted first: it ignores ABORT for ended transfers).
            self._send_to_session(tid, wire.encode(wire.Abort(tid, str(handle.error))))
        self._handles.pop(tid, None)
        self._owner.pop(tid, None)
        self._ended[tid] = None
        if len(self._ended) > _ENDED_REMEMBERED:
            self._ended.popitem(last=False)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            conn, _ = await loop.sock_accept(self._sock)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.rcvbuf:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            self._spawn(self._serve(conn))

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            hello = await server_handshake(
                conn,
                self.secret,
                self.identity,
                self.handshake_timeout_s,
                tls_offered=self.ssl_context is not None,
                tls_required=self.require_tls,
            )
        except (TransferRefused, OSError, TimeoutError, wire.WireError) as exc:
            log.info("kv receiver: handshake failed: %s", exc)
            conn.close()
            return
        proto = ReceiverProtocol(self, hello.session)
        self._sessions.setdefault(hello.session, set()).add(proto)
        tls = self.ssl_context if hello.flags & FLAG_TLS else None
        try:
            await loop.connect_accepted_socket(
                lambda: proto,
                conn,
                ssl=tls,
                ssl_handshake_timeout=self.handshake_timeout_s if tls else None,
            )
        except OSError:
            self.connection_closed(proto)
            conn.close()

    def connection_closed(self, proto: ReceiverProtocol) -> None:
        protos = self._sessions.get(proto.session)
        if protos is None or proto not in protos:
            return
        protos.discard(proto)
        if not protos:
            del self._sessions[proto.session]
        for tid, session in list(self._owner.items()):
            if session == proto.session and tid in self._handles:
                self._handles[tid].fail(PeerLost("a connection from the sender was lost"))
        # Its OPENs still waiting for expect() are dropped too (the sender sees PeerLost).
        lost = [key for key in self._pending_open if key[0] == proto.session]
        for key in lost:
            self._pending_open[key] = True
        if lost:
            self._wake_pending()

    def log_protocol_error(self, proto: ReceiverProtocol, exc: Exception) -> None:
        self.protocol_errors += 1
        log.warning("kv receiver: protocol error, closing connection: %s", exc)

    def leak_check(self) -> dict[str, int]:
        return {
            "transfers": len(self._handles),
            "pinned_buffers": sum(1 for h in self._all_handles if h.dest is not None),
            "tasks": len(self._tasks),
            "connections": sum(len(p) for p in self._sessions.values()),
        }

    async def close(self) -> None:
        for handle in list(self._handles.values()):
            handle.fail(PeerLost("receiver closed"))
        if self._accept_task is not None:
            self._accept_task.cancel()
            await asyncio.gather(self._accept_task, return_exceptions=True)
        for protos in list(self._sessions.values()):
            for proto in list(protos):
                if proto.transport is not None:
                    proto.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
        await asyncio.sleep(0)
