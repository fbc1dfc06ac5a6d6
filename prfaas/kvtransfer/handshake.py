"""Connection handshake: version check, peer identities, mutual HMAC-SHA256 challenge.

sender -> HELLO(nonce_s, session, identity); receiver -> CHALLENGE(nonce_r, mac_r, identity);
sender checks mac_r and -> AUTH(mac_s); receiver checks mac_s and -> WELCOME (or ABORT, close).
Both MACs are keyed with the shared secret, so neither side learns anything from a peer that lacks
it. Optional TLS is negotiated by HELLO flag bit 0 (`FLAG_TLS`): a receiver without a TLS context
refuses a sender that asks for it, and one that requires TLS refuses a sender that does not (ABORT
instead of CHALLENGE). When both agree, the TLS handshake starts right after WELCOME on the same
connection and every later frame runs inside TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import TransferRefused
from prfaas.kvtransfer.sockio import read_frame

FLAG_TLS = 1


def _mac(secret: bytes, role: bytes, a: bytes, b: bytes) -> bytes:
    return hmac.new(secret, role + a + b, hashlib.sha256).digest()


async def client_handshake(
    sock: socket.socket,
    secret: bytes,
    identity: str,
    session: bytes,
    timeout_s: float,
    *,
    tls: bool = False,
) -> str:
    """Authenticate to a receiver; returns its identity. Raises TransferRefused or OSError.

    With `tls`, HELLO asks for TLS and the caller must start the TLS handshake after this returns.
    """
    loop = asyncio.get_running_loop()
    nonce = os.urandom(wire.NONCE_SIZE)
    flags = FLAG_TLS if tls else 0
    async with asyncio.timeout(timeout_s):
        await loop.sock_sendall(sock, wire.encode(wire.Hello(flags, nonce, session, identity)))
        kind, meta = await read_frame(loop, sock)
        if kind == wire.Kind.ABORT:
            refusal = wire.decode(kind, meta)
            assert isinstance(refusal, wire.Abort)
            raise TransferRefused(f"receiver refused: {refusal.reason}")
        if kind != wire.Kind.CHALLENGE:
            raise TransferRefused(f"expected CHALLENGE, got {kind.name}")
        ch = wire.decode(kind, meta)
        assert isinstance(ch, wire.Challenge)
        if not hmac.compare_digest(ch.mac, _mac(secret, b"r", nonce, ch.nonce)):
            raise TransferRefused("receiver failed authentication")
        await loop.sock_sendall(
            sock, wire.frame(wire.Kind.AUTH, _mac(secret, b"s", ch.nonce, nonce))
        )
        kind, meta = await read_frame(loop, sock)
        if kind != wire.Kind.WELCOME:
            raise TransferRefused("receiver rejected our authentication")
        return ch.identity


async def server_handshake(
    sock: socket.socket,
    secret: bytes,
    identity: str,
    timeout_s: float,
    *,
    tls_offered: bool = False,
    tls_required: bool = False,
) -> wire.Hello:
    """Authenticate a sender; returns its HELLO. On failure sends ABORT and raises TransferRefused.

    If the HELLO has FLAG_TLS set, the caller must start TLS (server side) after this returns.
    """
    loop = asyncio.get_running_loop()
    nonce = os.urandom(wire.NONCE_SIZE)
    async with asyncio.timeout(timeout_s):
        kind, meta = await read_frame(loop, sock)
        if kind != wire.Kind.HELLO:
            raise TransferRefused(f"expected HELLO, got {kind.name}")
        hello = wire.decode(kind, meta)
        assert isinstance(hello, wire.Hello)
        wants_tls = bool(hello.flags & FLAG_TLS)
        if wants_tls != tls_offered and (wants_tls or tls_required):
            reason = "TLS not offered by this receiver" if wants_tls else "TLS required"
            await loop.sock_sendall(sock, wire.encode(wire.Abort("", reason)))
            raise TransferRefused(f"sender refused: {reason}")
        mac = _mac(secret, b"r", hello.nonce, nonce)
        await loop.sock_sendall(sock, wire.encode(wire.Challenge(nonce, mac, identity)))
        kind, meta = await read_frame(loop, sock)
        if kind != wire.Kind.AUTH or not hmac.compare_digest(
            bytes(meta), _mac(secret, b"s", nonce, hello.nonce)
        ):
            await loop.sock_sendall(sock, wire.encode(wire.Abort("", "authentication failed")))
            raise TransferRefused("sender failed authentication")
        await loop.sock_sendall(sock, wire.frame(wire.Kind.WELCOME, b""))
        return hello
