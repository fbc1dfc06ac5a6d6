"""Small async helpers over non-blocking sockets: vectored zero-copy send, exact receive, frames."""

from __future__ import annotations

import asyncio
import socket

from prfaas.kvtransfer import wire


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_writer(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_writer(sock.fileno())


async def sendmsg_all(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, bufs: list[memoryview]
) -> None:
    """Write every buffer with sendmsg (writev): the kernel copies straight from their memory."""
    bufs = [b for b in bufs if len(b)]
    while bufs:
        try:
            sent = sock.sendmsg(bufs)
        except (BlockingIOError, InterruptedError):
            sent = 0
        while sent and bufs:
            if sent >= len(bufs[0]):
                sent -= len(bufs[0])
                bufs.pop(0)
            else:
                bufs[0] = bufs[0][sent:]
                sent = 0
        if bufs:
            await _writable(loop, sock)


async def recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytearray:
    """Read exactly n bytes (n is always capped by the caller); EOF raises ConnectionError."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = await loop.sock_recv_into(sock, view[got:])
        if k == 0:
            raise ConnectionError("connection closed by peer")
        got += k
    return buf


async def read_frame(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> tuple[wire.Kind, bytearray]:
    """Read one control frame (never a CHUNK: the sender side never receives payloads)."""
    kind, meta_len = wire.parse_header(await recv_exactly(loop, sock, wire.HEADER_SIZE))
    if kind == wire.Kind.CHUNK:
        raise wire.WireError("unexpected chunk frame")
    return kind, await recv_exactly(loop, sock, meta_len)
