"""TCP sender: one PeerLink (N connections) per receiver address, reused across transfers."""

from __future__ import annotations

import asyncio
import ssl

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import KVSender, Peer
from prfaas.kvtransfer.peer_link import PeerLink
from prfaas.kvtransfer.send_handle import SendHandle
from prfaas.kvtransfer.telemetry import PeerSnapshot


class TcpSender(KVSender):
    """Create on the event loop. `open()` returns a SendHandle at once; connecting, handshakes
    and writing happen in background tasks owned by the peer's link."""

    def __init__(
        self,
        *,
        secret: bytes,
        identity: str = "sender",
        num_connections: int = 4,
        chunk_mib: float = 4.0,
        max_queued_mib: float = 256.0,
        connect_timeout_s: float = 5.0,
        sndbuf: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        if num_connections < 1:
            raise ValueError("num_connections must be >= 1")
        self.secret, self.identity = secret, identity
        self.num_connections = num_connections
        self.chunk_bytes = max(4096, min(int(chunk_mib * (1 << 20)), wire.MAX_CHUNK))
        self.max_queued_bytes = int(max_queued_mib * (1 << 20))
        self.connect_timeout_s = connect_timeout_s
        self.sndbuf = sndbuf
        # With a context, every connection asks for TLS (HELLO flag) and verifies the receiver's
        # certificate per the context; `server_hostname` defaults to the peer's host.
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self._links: dict[Peer, PeerLink] = {}
        self._dead: set[PeerLink] = set()

    def _link(self, peer: Peer) -> PeerLink:
        link = self._links.get(peer)
        if link is None or link.broken is not None:
            if link is not None:
                self._dead.add(link)
            link = PeerLink(
                peer,
                secret=self.secret,
                identity=self.identity,
                num_connections=self.num_connections,
                max_queued_bytes=self.max_queued_bytes,
                connect_timeout_s=self.connect_timeout_s,
                sndbuf=self.sndbuf,
                ssl_context=self.ssl_context,
                server_hostname=self.server_hostname,
            )
            self._links[peer] = link
        return link

    def open(
        self, peer: Peer, transfer_id: str, layout: list[wire.LayerLayout], metadata: bytes = b""
    ) -> SendHandle:
        if len(transfer_id.encode()) > wire.MAX_TID:
            raise ValueError("transfer id too long")
        host, port = peer  # a list (decoded JSON) works too; the key is a tuple
        link = self._link((host, port))
        handle = SendHandle(transfer_id, layout, metadata, link, self.chunk_bytes)
        link.register(handle)
        return handle

    def snapshot(self) -> list[PeerSnapshot]:
        """Telemetry of every live peer link."""
        return [link.snapshot() for link in self._links.values() if link.broken is None]

    def has_open_transfers(self) -> bool:
        """Whether a live peer link holds a transfer (queued, on the wire, or not yet acked)."""
        return any(link.handles for link in self._links.values() if link.broken is None)

    def leak_check(self) -> dict[str, int]:
        links = [*self._links.values(), *self._dead]
        self._dead = {lk for lk in self._dead if lk.live_tasks}
        return {
            "transfers": sum(len(lk.handles) for lk in links),
            "pinned_buffers": sum(h.queued_bytes for lk in links for h in lk.handles.values()),
            "tasks": sum(lk.live_tasks for lk in links if lk.broken is not None),
        }

    async def close(self) -> None:
        links = [*self._links.values(), *self._dead]
        self._links.clear()
        self._dead.clear()
        await asyncio.gather(*(lk.close() for lk in links))
