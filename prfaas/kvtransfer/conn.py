"""One sender-side connection to a receiver: plain TCP or TLS, behind the same two calls.

`RawConn` writes CHUNK payloads with sendmsg straight from the producer's memory (zero-copy up to
the kernel). `TlsConn` runs over an asyncio TLS stream: the payload is encrypted from the producer's
memoryviews into TLS records (one copy, unavoidable with TLS); once the handshake is done the TLS
transport encrypts inside `write`, so it keeps no reference to those views, and `drain` applies
the transport's backpressure.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.sockio import read_frame, sendmsg_all


class RawConn:
    tls = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()

    @property
    def tcp_socket(self) -> socket.socket:
        return self.sock

    async def send(self, bufs: list[memoryview]) -> None:
        await sendmsg_all(self._loop, self.sock, bufs)

    async def read_frame(self) -> tuple[wire.Kind, bytearray]:
        return await read_frame(self._loop, self.sock)

    def close(self) -> None:
        self.sock.close()


class TlsConn:
    tls = True

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @property
    def tcp_socket(self) -> socket.socket:
        return self.writer.get_extra_info("socket")

    async def send(self, bufs: list[memoryview]) -> None:
        for buf in bufs:
            if len(buf):
                self.writer.write(buf)
        await self.writer.drain()

    async def read_frame(self) -> tuple[wire.Kind, bytearray]:
        try:
            kind, meta_len = wire.parse_header(await self.reader.readexactly(wire.HEADER_SIZE))
            if kind == wire.Kind.CHUNK:
                raise wire.WireError("unexpected chunk frame")
            return kind, bytearray(await self.reader.readexactly(meta_len))
        except asyncio.IncompleteReadError:
            raise ConnectionError("connection closed by peer") from None

    def close(self) -> None:
        self.writer.transport.abort()


async def start_tls(
    sock: socket.socket, ctx: ssl.SSLContext, server_hostname: str, timeout_s: float
) -> TlsConn:
    """TLS client handshake on an authenticated socket (after WELCOME); the stream owns it then."""
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=ctx, server_hostname=server_hostname, ssl_handshake_timeout=timeout_s
    )
    return TlsConn(reader, writer)
