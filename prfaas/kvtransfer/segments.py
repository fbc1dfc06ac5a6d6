"""Byte ranges over a layer's logical buffer, which is a list of segments (memoryviews).

Sender and receiver may split the same logical buffer at different boundaries; every chunk is
addressed by (layer, offset, length) in the logical buffer and mapped to segment slices here.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class SegmentMap:
    """Maps logical byte ranges of one layer to slices of its segments (no copy)."""

    def __init__(self, segments: Sequence[memoryview]) -> None:
        self.segments = [memoryview(s).cast("B") for s in segments]
        self.starts: list[int] = []
        total = 0
        for seg in self.segments:
            self.starts.append(total)
            total += len(seg)
        self.nbytes = total

    def slices(self, offset: int, length: int) -> list[memoryview]:
        """Slices covering [offset, offset+length); raises ValueError if out of bounds."""
        if offset < 0 or length < 0 or offset + length > self.nbytes:
            raise ValueError(f"range [{offset}, {offset + length}) outside 0..{self.nbytes}")
        out: list[memoryview] = []
        i = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        end = offset + length
        while offset < end:
            seg, start = self.segments[i], self.starts[i]
            lo = offset - start
            hi = min(len(seg), end - start)
            if hi > lo:
                out.append(seg[lo:hi])
                offset += hi - lo
            i += 1
        return out


class RangeSet:
    """Disjoint received ranges of one layer; detects overlaps (a duplicate chunk is an error)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.covered = 0

    def add(self, start: int, end: int) -> bool:
        """Record [start, end); returns False (and records nothing) if it overlaps a range."""
        if end <= start:
            return end == start
        i = bisect.bisect_right(self.starts, start)
        if i > 0 and self.ends[i - 1] > start:
            return False
        if i < len(self.starts) and self.starts[i] < end:
            return False
        # Merge with touching neighbours to keep the lists short.
        if i > 0 and self.ends[i - 1] == start:
            i -= 1
            self.ends[i] = end
        else:
            self.starts.insert(i, start)
            self.ends.insert(i, end)
        if i + 1 < len(self.starts) and self.starts[i + 1] == self.ends[i]:
            self.ends[i] = self.ends.pop(i + 1)
            self.starts.pop(i + 1)
        self.covered += end - start
        return True
