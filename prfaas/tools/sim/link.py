"""The cross-datacenter line as a fluid model: capacity shared by the transfers on it.

Each KV transfer belongs to a peer (a PrfaaS worker -> decode worker pair). A peer's transfers can
together use at most `tcp.peer_bytes_per_s` (window/RTT and loss bound per connection, times the
connections per peer); the line's capacity is shared max-min fairly between peers under those
caps, and equally between the transfers of one peer. A transfer can only send bytes its prefill
has produced (`supply`): layer-wise streaming means the KV of a chunk leaves once the chunk is
computed, so sending overlaps the prefill. A transfer completes when its last byte is sent; the
decode side has it one-way delay (RTT / 2) later.

Rates change only at events (a supply, a drained transfer, a capacity change), so between events
every transfer's progress is linear and the next event is known: the link schedules exactly one
pending wake-up at a time (older ones are invalidated by a version number).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

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
    rate: float = 0.0

    @property
    def backlog(self) -> float:
        return self.supplied - self.sent


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
        self._transfers: list[Transfer] = []
        self._last = 0.0
        self._version = 0
        self.bytes_sent = 0.0
        """Cumulative bytes on the wire (egress telemetry differentiates it)."""

    @property
    def up(self) -> bool:
        return self.capacity_bytes_per_s > 0

    @property
    def one_way_s(self) -> float:
        return self.tcp.rtt_s / 2

    @property
    def backlog_bytes(self) -> float:
        """Bytes produced by prefills but not yet on the wire."""
        self._advance()
        return sum(t.backlog for t in self._transfers)

    @property
    def active_transfers(self) -> int:
        return len(self._transfers)

    def start(self, peer: str, total_bytes: float, on_delivered: Callable[[], None]) -> Transfer:
        t = Transfer(peer, total_bytes, on_delivered)
        self._advance()
        self._transfers.append(t)
        return t

    def supply(self, transfer: Transfer, num_bytes: float) -> None:
        """`num_bytes` more of `transfer`'s KV are ready to send."""
        self._advance()
        transfer.supplied = min(transfer.total_bytes, transfer.supplied + num_bytes)
        self._reshare()

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
        self._reshare()

    def _advance(self) -> None:
        now = self.loop.now
        dt = now - self._last
        self._last = now
        if dt <= 0:
            return
        for t in self._transfers:
            if t.rate > 0:
                # Within a nanosecond of draining counts as drained: the clock cannot resolve
                # smaller steps at t ~ 1e3 s, and a residue would wake the link forever.
                step = t.backlog if t.backlog <= t.rate * (dt + _EPS_S) else t.rate * dt
                t.sent += step
                self.bytes_sent += step

    def _reshare(self) -> None:
        """Max-min fair rates under per-peer caps; finish drained transfers; one wake-up."""
        done = [t for t in self._transfers if t.sent >= t.total_bytes - _EPS_BYTES]
        if done:
            self._transfers = [t for t in self._transfers if t not in done]
            for t in done:
                self.loop.after(self.one_way_s, t.on_delivered)
        peers: dict[str, list[Transfer]] = {}
        for t in self._transfers:
            t.rate = 0.0
            if t.backlog > _EPS_BYTES:
                peers.setdefault(t.peer, []).append(t)
        left, n = self.capacity_bytes_per_s, len(peers)
        # Water-filling: every peer is capped by its connections; all caps equal here, so the
        # fair share is min(cap, capacity / active peers).
        share = min(self._peer_cap, left / n) if n else 0.0
        wake = math.inf
        for group in peers.values():
            each = share / len(group)
            for t in group:
                t.rate = each
                if each > 0:
                    wake = min(wake, t.backlog / each)
        self._version += 1
        if wake < math.inf:
            self.loop.after(max(wake, _EPS_S), self._wake, self._version)

    def _wake(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        self._reshare()
