"""Cumulative histogram of the uncached lengths this worker prefilled (`WorkerLoad.prefill_length_*`).

Every request is prefilled on exactly one worker (a PrfaaS or PD-P worker's Prefill, or a mixed
worker's local Generate), so the rises of these counts summed over all workers are the whole
deployment's arrivals, whichever router replica routed them. Each replica's long-term planner
reads them (router/cluster_arrivals.py): a replica alone sees only the requests it routes.

A prefill is counted when it completes (a failed one is retried and counted where it succeeds),
by its uncached length `n` (prompt less cached tokens, at least 1) in bucket floor(4 * log2(n)):
four buckets per octave, each with the exact sum of its lengths, so the planner's length
distribution keeps every bucket's mean (bucket width 19 %).
"""

from __future__ import annotations

import math

BUCKETS_PER_OCTAVE = 4


def bucket_of(length: int) -> int:
    """Bucket index of an uncached length (lengths below 1 count as 1)."""
    return int(math.floor(BUCKETS_PER_OCTAVE * math.log2(max(1, length))))


class PrefillLengths:
    """Counts and token sums per length bucket since start; updated on the event loop only."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.tokens: list[int] = []

    def record(self, uncached_tokens: int) -> None:
        n = max(1, uncached_tokens)
        i = bucket_of(n)
        if i >= len(self.counts):
            grow = i + 1 - len(self.counts)
            self.counts.extend([0] * grow)
            self.tokens.extend([0] * grow)
        self.counts[i] += 1
        self.tokens[i] += n
