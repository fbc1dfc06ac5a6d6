"""TCP-only failure semantics: dead sender, corrupted payload, authentication, hostile frames."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import ChecksumError, PeerLost, TransferError, TransferRefused
from prfaas.kvtransfer.handshake import client_handshake
from prfaas.kvtransfer.tcp_receiver import TcpReceiver
from prfaas.kvtransfer.tcp_sender import TcpSender
from tests.kvtransfer.conftest import SECRET, make_layers

N = 40_000


async def raw_client(address: tuple[str, int], secret: bytes = SECRET) -> socket.socket:
    """An authenticated connection on which the test writes frames by hand."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, address)
    await client_handshake(sock, secret, "raw", os.urandom(wire.SESSION_SIZE), 5)
    return sock


@pytest.fixture
async def receiver():
    rx = await TcpReceiver(secret=SECRET, open_grace_s=0.2).start()
    yield rx
    await rx.close()


async def test_sender_dying_mid_transfer_fails_the_receiver_fast(receiver: TcpReceiver) -> None:
    layout, src = make_layers(3, N)
    rx = receiver.expect("t", layout, [[memoryview(bytearray(N))] for _ in src], 30)
    tx_side = TcpSender(secret=SECRET, num_connections=2, chunk_mib=1 / 64)
    tx = tx_side.open(receiver.address, "t", layout)
    tx.add(0, [memoryview(src[0])])
    await rx.wait_layer(0)
    await tx_side.close()  # the prefill worker dies: its sockets close mid-transfer
    with pytest.raises(PeerLost):
        await asyncio.wait_for(rx.wait_done(), 2)
    assert rx.dest is None
    assert not {k: v for k, v in receiver.leak_check().items() if v}
    assert not any(tx_side.leak_check().values())


async def test_bad_checksum_fails_and_nothing_is_installed(receiver: TcpReceiver) -> None:
    loop = asyncio.get_running_loop()
    layout = [[("k", "bf16", 1000)]]
    dst = bytearray(1000)
    rx = receiver.expect("c", layout, [[memoryview(dst)]], 10)
    sock = await raw_client(receiver.address)
    await loop.sock_sendall(sock, wire.encode(wire.Open("c", layout, b"")))
    kind, _ = await asyncio.wait_for(_read(sock), 5)
    assert kind == wire.Kind.OPEN_OK
    payload = os.urandom(1000)
    bad = wire.checksum([memoryview(payload)]) ^ 1
    await loop.sock_sendall(sock, wire.encode(wire.Chunk("c", 0, 0, 1000, bad)) + payload)
    with pytest.raises(ChecksumError):
        await asyncio.wait_for(rx.wait_done(), 5)
    kind, meta = await asyncio.wait_for(_read(sock), 5)
    assert kind == wire.Kind.ABORT and "checksum" in wire.decode(kind, meta).reason  # type: ignore[attr-defined]
    assert rx.dest is None
    sock.close()


async def test_wrong_secret_is_refused(receiver: TcpReceiver) -> None:
    layout, src = make_layers(1, N)
    rx = receiver.expect("auth", layout, [[memoryview(bytearray(N))]], 10)
    tx_side = TcpSender(secret=b"wrong", num_connections=2)
    tx = tx_side.open(receiver.address, "auth", layout)
    tx.add(0, [memoryview(src[0])])
    with pytest.raises(TransferRefused):
        await asyncio.wait_for(tx.wait_done(), 5)
    rx.abort("test over")
    await tx_side.close()
    assert not any(tx_side.leak_check().values())


async def test_second_session_cannot_hijack_an_open_transfer(receiver: TcpReceiver) -> None:
    layout, src = make_layers(2, N)
    dst = [bytearray(N) for _ in src]
    rx = receiver.expect("h", layout, [[memoryview(d)] for d in dst], 10)
    tx_side = TcpSender(secret=SECRET, num_connections=2, chunk_mib=1 / 64)
    tx = tx_side.open(receiver.address, "h", layout)
    tx.add(0, [memoryview(src[0])])
    await rx.wait_layer(0)
    # Another authenticated session tries a duplicate OPEN and a chunk into the same transfer.
    loop = asyncio.get_running_loop()
    evil = await raw_client(receiver.address)
    await loop.sock_sendall(evil, wire.encode(wire.Open("h", layout, b"")))
    junk = b"\x00" * 100
    await loop.sock_sendall(
        evil, wire.encode(wire.Chunk("h", 1, 0, 100, wire.checksum([memoryview(junk)]))) + junk
    )
    kinds = [(await asyncio.wait_for(_read(evil), 5))[0] for _ in range(2)]
    assert kinds == [wire.Kind.ABORT, wire.Kind.ABORT]
    tx.add(1, [memoryview(src[1])])
    tx.finish(b"ok")
    assert await rx.wait_done() == b"ok"
    await tx.wait_done()
    assert dst == src
    evil.close()
    await tx_side.close()


async def test_garbage_closes_only_that_connection(receiver: TcpReceiver) -> None:
    loop = asyncio.get_running_loop()
    sock = await raw_client(receiver.address)
    await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises((ConnectionError, TransferError, OSError)):
        await asyncio.wait_for(_read(sock), 5)
    sock.close()
    assert receiver.protocol_errors == 1


async def _read(sock: socket.socket) -> tuple[wire.Kind, bytearray]:
    from prfaas.kvtransfer.sockio import read_frame

    return await read_frame(asyncio.get_running_loop(), sock)
