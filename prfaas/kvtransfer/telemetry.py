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
# Then (kernels >= 4.9): u64 pacing_rate, max_pacing_rate, bytes_acked, bytes_received; u32
# segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out; u64 delivery_rate.
_TCP_INFO_RATE = struct.Struct("=4Q6IQ")
_RATE_OFFSET = _TCP_INFO.size
# Then (kernels >= 4.10): u64 busy_time, rwnd_limited, sndbuf_limited (microseconds the
# connection had data to send, and of those, limited by the receiver's window or by its own
# send buffer, i.e. by the application that fills it).
_TCP_INFO_CHRONO = struct.Struct("=3Q")
_CHRONO_OFFSET = _RATE_OFFSET + _TCP_INFO_RATE.size
_BYTES_ACKED, _NOTSENT_BYTES, _DELIVERY_RATE = 2, 6, 10
_APP_LIMITED_BIT = 0x01  # low bit of the 8th u8: tcpi_delivery_rate_app_limited
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
    delivery_rate_bytes_per_s: int = 0
    """Kernel's latest delivery-rate sample (0 on kernels without it)."""
    delivery_rate_app_limited: bool = False
    """That sample was taken while the sender had too little data to fill the path."""
    bytes_acked: int = 0
    notsent_bytes: int = 0
    """Bytes written to the socket that the kernel has not sent yet (its share of a backlog)."""
    busy_time_us: int = 0
    """Microseconds the connection had data to send (cumulative; 0 on kernels without it)."""
    rwnd_limited_us: int = 0
    """Of those, limited by the receiver's window (a slow reader, not the line)."""
    sndbuf_limited_us: int = 0
    """Of those, limited by the send buffer (the sending process, not the line)."""


def parse_tcp_info(raw: bytes) -> TcpInfo:
    """Parse the prefix of `struct tcp_info`; raises ValueError if the kernel gave too little."""
    if len(raw) < _TCP_INFO.size:
        raise ValueError(f"tcp_info of {len(raw)} bytes, need {_TCP_INFO.size}")
    f = _TCP_INFO.unpack_from(raw)
    u8, u32 = f[:8], f[8:]
    rate = (
        _TCP_INFO_RATE.unpack_from(raw, _RATE_OFFSET)
        if len(raw) >= _RATE_OFFSET + _TCP_INFO_RATE.size
        else None
    )
    chrono = (
        _TCP_INFO_CHRONO.unpack_from(raw, _CHRONO_OFFSET)
        if len(raw) >= _CHRONO_OFFSET + _TCP_INFO_CHRONO.size
        else (0, 0, 0)
    )
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
        delivery_rate_bytes_per_s=rate[_DELIVERY_RATE] if rate else 0,
        delivery_rate_app_limited=bool(u8[7] & _APP_LIMITED_BIT),
        bytes_acked=rate[_BYTES_ACKED] if rate else 0,
        notsent_bytes=rate[_NOTSENT_BYTES] if rate else 0,
        busy_time_us=chrono[0],
        rwnd_limited_us=chrono[1],
        sndbuf_limited_us=chrono[2],
    )


def sample_tcp_info(sock: socket.socket) -> TcpInfo | None:
    """TCP_INFO of a connected socket, or None where unsupported or closed."""
    try:
        size = _CHRONO_OFFSET + _TCP_INFO_CHRONO.size
        return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, size))
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
    held_bytes: int = 0
    """Of `queued_bytes`, those of transfers the receiver has not accepted yet (no OPEN_OK)."""


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

    def snapshot(
        self, socks: list[socket.socket], active: int, held_bytes: int = 0
    ) -> PeerSnapshot:
        """`held_bytes`: of the queued bytes, those of transfers the receiver has not accepted."""
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
            held_bytes=held_bytes,
        )


def line_backlog_bytes(peers: list[PeerSnapshot]) -> int:
    """KV bytes waiting for the line: queued in the sender, and written to the sockets but unsent
    by the kernel (socket buffers hide megabytes of a backlog when the link slows). Bytes of a
    transfer the receiver has not accepted yet are left out: they wait for the decode worker's
    admission, not for the line. Counted, a prefill that ended before its admission read as a
    saturated link, and the router measured issue 12's 0.5 Gbit/s link at 0.12 (2x-link run)."""
    return sum(
        peer.queued_bytes
        - peer.held_bytes
        + sum(t.notsent_bytes for t in peer.tcp if t is not None)
        for peer in peers
    )


def sending_connections(peers: list[PeerSnapshot], bytes_seen: dict[str, int]) -> int:
    """The KV connections with data in flight now (TCP_INFO unacked > 0) of the peers that sent
    since `bytes_seen`: the senders egress was shared by (the router's capacity estimate reads a
    backlog at senders that each keep their own rate as theirs, not the line's)."""
    return sum(
        sum(1 for t in peer.tcp if t is not None and t.unacked > 0)
        for peer in peers
        if peer.bytes_sent > bytes_seen.get(peer.peer, 0)
    )


def link_delivery_rate(peers: list[PeerSnapshot], bytes_seen: dict[str, int]) -> float:
    """The link's measured delivery rate (bytes/s) at this sample, from the kernel's per-connection
    delivery_rate: a lower bound on its capacity (the router's estimator takes it as such).
    Connections with data unacknowledged right now share the path at the same instant, so their
    rates add up; when none is in flight, the best rate of a peer that sent since `bytes_seen`
    (the previous sample's bytes_sent per peer) is the latest evidence. Peers idle since then
    carry stale samples and count for nothing. 0.0 when no peer sent."""
    concurrent = 0.0
    latest = 0.0
    for peer in peers:
        if peer.bytes_sent <= bytes_seen.get(peer.peer, 0):
            continue
        infos = [t for t in peer.tcp if t is not None]
        concurrent += sum(t.delivery_rate_bytes_per_s for t in infos if t.unacked > 0)
        latest = max([latest, *(t.delivery_rate_bytes_per_s for t in infos)])
    return concurrent or latest


LINE_SAMPLE_S = 0.1
"""Interval of a worker's line-busy samples while a transfer is open: short against a layer's
burst on a fallen link (0.5 s of a 15 MB burst at a quarter of issue 12's 1 Gbit/s line)."""
LINE_BUCKET_S = 0.2
"""Width of the line-busy buckets (`LineBusyMeter`), aligned to the wall clock so that every
worker's bucket k covers the same fifth of a second (hosts keep their clocks within
milliseconds by NTP)."""


@dataclass
class LineBusyMeter:
    """Per wall-clock bucket of `LINE_BUCKET_S` (index floor(unix time / LINE_BUCKET_S)): the
    KV bytes this sender put on the wire (written, less the kernel's unsent bytes), and the
    seconds in which a backlog (`line_backlog_bytes`) of at least `min_backlog_bytes` stood
    at both ends of a sample. The worker samples every ~100 ms while a transfer is open and
    reports the last `keep` buckets; the router adds every PrfaaS worker's bytes in the buckets
    in which one of them waited for the line most of the bucket: what the line carried with a
    queue at it, however many senders shared it (router/control_loops.py `_line_busy`).

    Why not the backlog at the report and a tick's mean egress: KV goes out in bursts (one per
    layer of a prefill chunk), fractions of a second each. A backlog that stood for the last
    0.3 s of a tick, over the tick's mean egress, read a link twice as fast as configured at a
    quarter of its rate (issue 12's 2x-link run), and a link that fell 4x under a load it still
    carried showed a backlog at the report only when a burst straddled it (the first raise 9-18 s
    after the drop). Why every sender's bytes, not only the waiting one's: a sender that waits
    shares the line with senders that do not, and its own bytes read a healthy line at a fraction
    of its rate (the first try of this meter, in issue 12's 0.5 Λ cut run: 17 MB/s on 125).
    Owned by the worker's telemetry task; `observe` is called from the event loop."""

    min_backlog_bytes: int = 1 << 20
    keep: int = 25
    buckets: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Bucket index -> (bytes on the wire, seconds with a backlog at both ends)."""
    _last: tuple[float, int, int, int, int] | None = None
    """(unix time, bytes on the wire, backlog, TCP busy and not-the-line microseconds) at the
    previous observation."""

    def observe(self, now: float, peers: list[PeerSnapshot]) -> None:
        """Spread the bytes since the last observation over the buckets the interval spans (in
        proportion to the time in each), and its time too when a backlog stood at both ends."""
        if not peers:  # nothing open: no bytes to count, and counts restart with the next peer
            self._last = None
            return
        on_wire = sum(
            peer.bytes_sent - sum(t.notsent_bytes for t in peer.tcp if t is not None)
            for peer in peers
        )
        backlog = line_backlog_bytes(peers)
        infos = [t for peer in peers for t in peer.tcp if t is not None]
        busy = sum(t.busy_time_us for t in infos)
        not_line = sum(t.sndbuf_limited_us for t in infos)
        last, self._last = self._last, (now, on_wire, backlog, busy, not_line)
        if last is None or now <= last[0] or on_wire < last[1]:
            return  # first sample, a clock step, or a peer link dropped with its count
        then, wire_then, backlog_then, busy_then, not_line_then = last
        waited = min(backlog_then, backlog) >= self.min_backlog_bytes and self._line_bound(
            busy - busy_then, not_line - not_line_then
        )
        rate = (on_wire - wire_then) / (now - then)
        k = int(then // LINE_BUCKET_S)
        while k * LINE_BUCKET_S < now:
            overlap = min(now, (k + 1) * LINE_BUCKET_S) - max(then, k * LINE_BUCKET_S)
            if overlap > 1e-9:  # float division can land `then` a hair inside the bucket before
                sent, waited_s = self.buckets.get(k, (0.0, 0.0))
                self.buckets[k] = (sent + rate * overlap, waited_s + (overlap if waited else 0.0))
            k += 1
        for old in [b for b in self.buckets if b < k - self.keep]:
            del self.buckets[old]

    @staticmethod
    def _line_bound(busy_us: int, not_line_us: int) -> bool:
        """Whether the kernel says the connections were not held by this process for more
        than half the time they had data (`TcpInfo.sndbuf_limited_us`: a send buffer the
        process did not fill is no wait for the line). Time limited by the receiver's window
        still counts: a userspace link emulator (`prfaas link`) is to the kernel a receiver
        that reads at the line's rate, so a slow decode worker cannot be told from the line
        here. Without the counters (older kernels, or a peer set that changed) it is assumed."""
        if busy_us <= 0 or not_line_us < 0:
            return True
        return not_line_us <= 0.5 * busy_us

    def report(self, now: float) -> tuple[list[int], list[float], list[float]]:
        """(bucket indices, bytes, backlogged seconds) of the last `keep` buckets before `now`
        (unix time), oldest first; an idle sender's old buckets are dropped here."""
        first = int(now // LINE_BUCKET_S) - self.keep
        for old in [b for b in self.buckets if b < first]:
            del self.buckets[old]
        keys = sorted(self.buckets)
        return keys, [self.buckets[b][0] for b in keys], [self.buckets[b][1] for b in keys]
