"""The cross-datacenter line as a fluid model: capacity shared by the transfers on it.

Each KV transfer belongs to a peer (a PrfaaS worker -> decode worker pair). A peer's transfers can
together use at most `tcp.peer_bytes_per_s` (window/RTT and loss bound per connection, times the
connections per peer); the line's capacity is shared max-min fairly between peers under those
caps, and equally between the transfers of one peer. A transfer can only send bytes its prefill
has produced (`supply`): layer-wise streaming means the KV of a chunk leaves once the chunk is
computed, so sending overlaps the prefill. A transfer completes when its last byte is sent; the
decode side has it one-way delay (RTT / 2) later.

Virtual time (fair queueing), so that an event costs O(log peers), not O(transfers): every peer
with bytes to send gets the same rate, `share = min(peer cap, capacity / sending peers)` (all caps
are equal), so one number, the service `V` a sending peer has received, advances at `share` for
all of them. A peer keeps the `V` at which its transfers were last settled and the `V` at which
its next transfer drains (its smallest backlog times its sending transfers: they split the
peer's service equally); peers sit in a heap by that key. A change of `share` (a peer starts or
stops sending, a capacity change) only changes how fast `V` runs, not any key, so the link
schedules exactly one pending wake-up at a time, for the heap's smallest key (older ones are
invalidated by a version number). Only the peer an event touches is settled.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.tcp import TcpParams, peer_bytes_per_s

_EPS_BYTES = 1e-6
_EPS_S = 1e-9


@dataclass(eq=False)
class Transfer:
    peer: str
    total_bytes: float
    on_delivered: Callable[[], None]
    supplied: float = 0.0
    sent: float = 0.0

    @property
    def backlog(self) -> float:
        return self.supplied - self.sent


@dataclass(eq=False)
class _Peer:
    """One peer's transfers; `settled_v` is the link's `V` when their `sent` was last updated."""

    transfers: list[Transfer] = field(default_factory=list)
    sending: int = 0
    """Transfers with a backlog (they split the peer's service equally)."""
    settled_v: float = 0.0
    key: float = math.inf
    """`V` at which the next sending transfer drains (inf: the peer is not sending)."""
    version: int = 0
    """Bumped on every re-key; a heap entry with an older version is stale."""


@dataclass(frozen=True)
class LinkChange:
    """One scheduled change of the line (`schedule.py` parses them)."""

    at_s: float
    capacity_fraction: float
    """Of the nominal capacity: 0 is a cut (down), 1 a restore."""
    rtt_s: float | None = None
    loss: float | None = None


class Link:
    def __init__(self, loop: EventLoop, capacity_bytes_per_s: float, tcp: TcpParams) -> None:
        self.loop = loop
        self.nominal_bytes_per_s = capacity_bytes_per_s
        self.capacity_bytes_per_s = capacity_bytes_per_s
        self.tcp = tcp
        self._peer_cap = peer_bytes_per_s(tcp)
        self._peers: dict[str, _Peer] = {}
        self._heap: list[tuple[float, int, str]] = []  # (key, version, peer name)
        self._sending_peers = 0
        self._v = 0.0  # service per sending peer since the start, bytes
        self._last = 0.0
        self._version = 0
        self._transfers = 0
        self._supplied = 0.0
        self._sent = 0.0
        self._sending_peer_s = 0.0

    @property
    def up(self) -> bool:
        return self.capacity_bytes_per_s > 0

    @property
    def one_way_s(self) -> float:
        return self.tcp.rtt_s / 2

    @property
    def share_bytes_per_s(self) -> float:
        """What each sending peer gets now."""
        n = self._sending_peers
        return min(self._peer_cap, self.capacity_bytes_per_s / n) if n else 0.0

    @property
    def bytes_sent(self) -> float:
        """Cumulative bytes on the wire up to now (egress telemetry differentiates it)."""
        self._advance()
        return self._sent

    @property
    def sending_peer_seconds(self) -> float:
        """Cumulative sending peers x seconds up to now (telemetry differentiates it: the mean
        number of peers with bytes waiting over a tick)."""
        self._advance()
        return self._sending_peer_s

    @property
    def backlog_bytes(self) -> float:
        """Bytes produced by prefills but not yet on the wire."""
        self._advance()
        return max(0.0, self._supplied - self._sent)

    @property
    def active_transfers(self) -> int:
        return self._transfers

    def start(self, peer: str, total_bytes: float, on_delivered: Callable[[], None]) -> Transfer:
        t = Transfer(peer, total_bytes, on_delivered)
        self._advance()
        p = self._peers.get(peer)
        if p is None:
            p = self._peers[peer] = _Peer(settled_v=self._v)
        p.transfers.append(t)
        self._transfers += 1
        return t

    def supply(self, transfer: Transfer, num_bytes: float) -> None:
        """`num_bytes` more of `transfer`'s KV are ready to send."""
        self._advance()
        p = self._peers[transfer.peer]
        self._settle(p)
        before = transfer.supplied
        transfer.supplied = min(transfer.total_bytes, transfer.supplied + num_bytes)
        self._supplied += transfer.supplied - before
        self._rekey(transfer.peer, p)
        self._schedule()

    def apply(self, change: LinkChange) -> None:
        self._advance()
        self.capacity_bytes_per_s = self.nominal_bytes_per_s * change.capacity_fraction
        if change.rtt_s is not None or change.loss is not None:
            self.tcp = replace(
                self.tcp,
                rtt_s=self.tcp.rtt_s if change.rtt_s is None else change.rtt_s,
                loss=self.tcp.loss if change.loss is None else change.loss,
            )
            self._peer_cap = peer_bytes_per_s(self.tcp)
        self._schedule()

    def _advance(self) -> None:
        """Run `V` (and the wire's byte count) forward to now at the current share."""
        now = self.loop.now
        dt = now - self._last
        self._last = now
        if dt <= 0 or not self._sending_peers:
            return
        share = self.share_bytes_per_s
        self._sending_peer_s += self._sending_peers * dt
        self._v += share * dt
        self._sent += share * dt * self._sending_peers

    def _settle(self, p: _Peer) -> None:
        """Bring `p`'s transfers' `sent` up to the link's `V` (the sending ones split it)."""
        served = self._v - p.settled_v
        p.settled_v = self._v
        if served <= 0 or not p.sending:
            return
        each = served / p.sending
        # Within a nanosecond of draining counts as drained: the clock cannot resolve smaller
        # steps at t ~ 1e3 s, and a residue would wake the link forever.
        drained_within = each + self.share_bytes_per_s / p.sending * _EPS_S
        for t in p.transfers:
            backlog = t.backlog
            if backlog > _EPS_BYTES:
                t.sent += backlog if backlog <= drained_within else each

    def _rekey(self, name: str, p: _Peer) -> None:
        """Finish `p`'s drained transfers and put it back in the heap by its next drain."""
        keep: list[Transfer] = []
        sending, smallest = 0, math.inf
        for t in p.transfers:
            backlog = t.backlog
            if t.sent >= t.total_bytes - _EPS_BYTES:
                self._transfers -= 1
                self.loop.after(self.one_way_s, t.on_delivered)
                continue
            keep.append(t)
            if backlog > _EPS_BYTES:
                sending += 1
                smallest = min(smallest, backlog)
        p.transfers = keep
        self._sending_peers += (sending > 0) - (p.sending > 0)
        p.sending = sending
        p.version += 1
        p.key = p.settled_v + smallest * sending if sending else math.inf
        if sending:
            heapq.heappush(self._heap, (p.key, p.version, name))
        elif not keep:
            del self._peers[name]

    def _schedule(self) -> None:
        """One wake-up, at the real time the smallest key is reached at the current share."""
        self._version += 1
        heap, peers = self._heap, self._peers
        while heap:
            key, version, name = heap[0]
            p = peers.get(name)
            if p is not None and p.version == version:
                break
            heapq.heappop(heap)
        share = self.share_bytes_per_s
        if not heap or share <= 0:
            return
        wait = (heap[0][0] - self._v) / share
        self.loop.after(max(wait, _EPS_S), self._wake, self._version)

    def _wake(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        # Every peer whose key has been reached (within the clock's resolution) drains now.
        heap, peers = self._heap, self._peers
        limit = self._v + self.share_bytes_per_s * _EPS_S
        while heap and heap[0][0] <= limit:
            _, version_, name = heapq.heappop(heap)
            p = peers.get(name)
            if p is None or p.version != version_:
                continue
            self._settle(p)
            self._rekey(name, p)
        self._schedule()
