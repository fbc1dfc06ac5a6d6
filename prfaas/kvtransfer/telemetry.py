"""Link telemetry: per-peer goodput, bytes in flight and queued, latencies, kernel TCP_INFO.

Plain data only; the metrics exporter and the router read `PeerStats.snapshot()`.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field

# struct tcp_info (linux/tcp.h), first 104 bytes: 8 u8 fields then 24 u32 fields.
_TCP_INFO = struct.Struct("=8B24I")
_RTO, _SND_MSS, _UNACKED, _LOST, _RETRANS = 0, 2, 4, 6, 7
_RTT, _RTTVAR, _SND_SSTHRESH, _SND_CWND, _TOTAL_RETRANS = 15, 16, 17, 18, 23


@dataclass(frozen=True)
class TcpInfo:
    """One kernel sample of a connection (RTTs in microseconds, cwnd in segments)."""

    state: int
    retransmits: int
    rtt_us: int
    rttvar_us: int
    snd_cwnd: int
    snd_ssthresh: int
    snd_mss: int
    unacked: int
    lost: int
    total_retrans: int


def parse_tcp_info(raw: bytes) -> TcpInfo:
    """Parse the prefix of `struct tcp_info`; raises ValueError if the kernel gave too little."""
    if len(raw) < _TCP_INFO.size:
        raise ValueError(f"tcp_info of {len(raw)} bytes, need {_TCP_INFO.size}")
    f = _TCP_INFO.unpack_from(raw)
    u8, u32 = f[:8], f[8:]
    return TcpInfo(
        state=u8[0],
        retransmits=u8[2],
        rtt_us=u32[_RTT],
        rttvar_us=u32[_RTTVAR],
        snd_cwnd=u32[_SND_CWND],
        snd_ssthresh=u32[_SND_SSTHRESH],
        snd_mss=u32[_SND_MSS],
        unacked=u32[_UNACKED],
        lost=u32[_LOST],
        total_retrans=u32[_TOTAL_RETRANS],
    )


def sample_tcp_info(sock: socket.socket) -> TcpInfo | None:
    """TCP_INFO of a connected socket, or None where unsupported or closed."""
    try:
        return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size))
    except (OSError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class PeerSnapshot:
    peer: str
    connections: int
    goodput_bytes_per_s: float
    bytes_sent: int
    bytes_in_flight: int
    queued_bytes: int
    active_transfers: int
    transfers_done: int
    transfers_failed: int
    recent_latencies_s: tuple[float, ...]
    tcp: tuple[TcpInfo | None, ...]


@dataclass
class PeerStats:
    """Mutable counters of one peer, updated by the sender on the event loop."""

    peer: str
    ewma_tau_s: float = 1.0
    bytes_sent: int = 0
    bytes_in_flight: int = 0
    queued_bytes: int = 0
    transfers_done: int = 0
    transfers_failed: int = 0
    goodput: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    _last_t: float = field(default_factory=time.monotonic)
    _acc: int = 0

    def on_sent(self, nbytes: int) -> None:
        """Account written bytes; folds them into the moving average at most every 10 ms."""
        self.bytes_sent += nbytes
        self._acc += nbytes
        now = time.monotonic()
        dt = now - self._last_t
        if dt >= 0.01:
            self._fold(now, dt)

    def _fold(self, now: float, dt: float) -> None:
        alpha = min(1.0, dt / self.ewma_tau_s)
        self.goodput += alpha * (self._acc / dt - self.goodput)
        self._acc, self._last_t = 0, now

    def on_transfer_end(self, ok: bool, latency_s: float) -> None:
        if ok:
            self.transfers_done += 1
            self.latencies.append(latency_s)
        else:
            self.transfers_failed += 1

    def snapshot(self, socks: list[socket.socket], active: int) -> PeerSnapshot:
        now = time.monotonic()
        if now - self._last_t >= 0.01:
            self._fold(now, now - self._last_t)
        return PeerSnapshot(
            peer=self.peer,
            connections=len(socks),
            goodput_bytes_per_s=self.goodput,
            bytes_sent=self.bytes_sent,
            bytes_in_flight=self.bytes_in_flight,
            queued_bytes=self.queued_bytes,
            active_transfers=active,
            transfers_done=self.transfers_done,
            transfers_failed=self.transfers_failed,
            recent_latencies_s=tuple(self.latencies),
            tcp=tuple(sample_tcp_info(s) for s in socks),
        )
