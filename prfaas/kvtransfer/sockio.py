"""Small async helpers over non-blocking sockets: vectored zero-copy send, exact receive, frames."""

from __future__ import annotations

import asyncio
import socket
from collections import deque

import xxhash

from prfaas.kvtransfer import wire

# Payload bytes offered per sendmsg: what the kernel just copied is hashed while still in L2.
SEND_CAP = 1 << 20


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


async def send_chunk(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, head: bytes, parts: list[memoryview]
) -> int:
    """Write a CHUNK frame: `head`, the payload `parts`, then the xxh3_64 trailer; returns it.

    Each payload piece is hashed right after sendmsg copied it into the kernel (cache-hot), so the
    producer's memory is read from DRAM once, by the copy, instead of once more by the hash.
    """
    hasher = xxhash.xxh3_64()
    hdr = memoryview(head)
    queue = deque(p for p in parts if len(p))
    while len(hdr) or queue:
        iov, room = ([hdr] if len(hdr) else []), SEND_CAP
        for part in queue:
            if room <= 0:
                break
            iov.append(part[:room])
            room -= len(iov[-1])
        offered = sum(map(len, iov))
        try:
            sent = sock.sendmsg(iov)
        except (BlockingIOError, InterruptedError):
            sent = 0
        full = sent < offered
        if len(hdr):
            k = min(sent, len(hdr))
            hdr, sent = hdr[k:], sent - k
        while sent:
            part = queue[0]
            k = min(sent, len(part))
            hasher.update(part[:k])
            sent -= k
            if k == len(part):
                queue.popleft()
            else:
                queue[0] = part[k:]
        if full:
            await _writable(loop, sock)
    chk = hasher.intdigest()
    await sendmsg_all(loop, sock, [memoryview(wire.TRAILER.pack(chk))])
    return chk


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
