"""The relay's rate cap: a virtual-time token bucket whose timeline one relay keeps alone, or several
relay processes share through a file (one emulated link in front of several PD workers).

A deployment without network namespaces starts one `prfaas link` relay per PD worker (each fronts
that worker's KV port). The topology's `[link] rate_gbps` is one cross-datacenter link, so those
relays must draw from one budget: with private buckets, N relays would carry N times the rate, and
a policy whose KV goes to more PD workers (naive-hetero decodes on all of them) would get a wider
link than one that decodes on fewer. `FileTimeline` keeps the bucket's clock (the virtual time at
which the bytes reserved so far will have left) in a small file, read and advanced under an
exclusive `flock`, so every relay given the same file charges its bytes to the same link.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
from abc import ABC, abstractmethod
from pathlib import Path

_SLOT = struct.Struct("<d")  # one float64 per direction: the timeline's virtual time (monotonic s)
DIRECTIONS = ("up", "down")


class Timeline(ABC):
    """When the bytes reserved so far will have left the link (time.monotonic seconds)."""

    @abstractmethod
    def advance(self, now: float, idle_credit_s: float, cost_s: float) -> float:
        """t = max(t, now - idle_credit_s) + cost_s, atomically; returns the new t."""


class LocalTimeline(Timeline):
    def __init__(self) -> None:
        self._t = time.monotonic()

    def advance(self, now: float, idle_credit_s: float, cost_s: float) -> float:
        self._t = max(self._t, now - idle_credit_s) + cost_s
        return self._t


class FileTimeline(Timeline):
    """A timeline shared by every process that opens the same file (slot = direction index).
    CLOCK_MONOTONIC is system-wide, so the stored times mean the same in every process."""

    def __init__(self, path: str | Path, slot: int) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._offset = slot * _SLOT.size

    def advance(self, now: float, idle_credit_s: float, cost_s: float) -> float:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self._fd, _SLOT.size, self._offset)
            t = _SLOT.unpack(raw)[0] if len(raw) == _SLOT.size else 0.0
            t = max(t, now - idle_credit_s) + cost_s
            os.pwrite(self._fd, _SLOT.pack(t), self._offset)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return t

    def close(self) -> None:
        os.close(self._fd)


class TokenBucket:
    """Virtual-time token bucket: `reserve(n)` returns how long to wait before sending n bytes.
    An idle link accumulates at most `burst_bytes` of credit."""

    def __init__(
        self, rate_bytes_per_s: float | None, burst_bytes: int, timeline: Timeline | None = None
    ) -> None:
        self.rate, self.burst = rate_bytes_per_s, burst_bytes
        self.timeline = timeline or LocalTimeline()

    def reserve(self, n: int) -> float:
        if not self.rate:
            return 0.0
        now = time.monotonic()
        t = self.timeline.advance(now, self.burst / self.rate, n / self.rate)
        return max(0.0, t - now)


def buckets(
    rate_bytes_per_s: float | None, burst_bytes: int, shared_file: str | Path | None = None
) -> dict[str, TokenBucket]:
    """One bucket per direction; with `shared_file`, on timelines shared through that file."""
    return {
        d: TokenBucket(
            rate_bytes_per_s,
            burst_bytes,
            FileTimeline(shared_file, i) if shared_file is not None else None,
        )
        for i, d in enumerate(DIRECTIONS)
    }
