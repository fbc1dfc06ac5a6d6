"""Throughput of one TCP connection on a long link, and of several in parallel.

A connection is bounded by its window (at most `window_bytes` in flight per round trip:
window / RTT) and, under random loss p, by the Mathis et al. steady state
MSS / RTT · sqrt(3 / (2p)) (CCR 1997). The KV sender opens `connections` per peer, so a peer's
transfers can use up to `connections` times one connection's rate; the link's capacity caps the
sum over peers (`link.py` shares it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MSS_BYTES = 1448
"""Payload of one segment on a 1500-byte MTU path with TCP timestamps."""
MATHIS_C = math.sqrt(1.5)


@dataclass(frozen=True)
class TcpParams:
    rtt_s: float = 0.010
    """Round trip time of the path (the link's one-way delay twice)."""
    loss: float = 0.0
    """Random segment loss probability."""
    window_bytes: float = 6 * (1 << 20)
    """Largest window a connection reaches (Linux tcp_rmem max, 6 MiB by default)."""
    connections: int = 4
    """Connections per peer (the topology's `kv_connections`)."""
    mss_bytes: float = MSS_BYTES


def connection_bytes_per_s(p: TcpParams) -> float:
    """One connection's steady throughput: min(window / RTT, Mathis); inf without RTT or loss."""
    rtt = max(p.rtt_s, 1e-9)
    window_cap = p.window_bytes / rtt if p.rtt_s > 0 else math.inf
    loss_cap = p.mss_bytes * MATHIS_C / (rtt * math.sqrt(p.loss)) if p.loss > 0 else math.inf
    return min(window_cap, loss_cap)


def peer_bytes_per_s(p: TcpParams) -> float:
    """All of one peer's connections together."""
    return p.connections * connection_bytes_per_s(p)
