"""The whole deployment's arrivals for the long-term planner, read from the workers' load reports.

Each router replica routes only its share of the requests (a Service spreads clients over the
replicas), so the arrivals it observes itself (`LongTermController.observe_request`) are part of
the deployment's, and the planner leader would plan the PD-P/PD-D split on that part: half the
rate and half the samples with two replicas, and another length mix when clients differ. Every
worker reports a cumulative histogram of the uncached lengths it prefilled
(`WorkerLoad.prefill_length_counts` / `_tokens`, worker/prefill_lengths.py) and every request is
prefilled on one worker, so the rises of those histograms summed over the workers are every
replica's arrivals. `ClusterArrivals.sample()` (once per long tick) returns the rises since its
previous call; the controller keeps them over its window (`LongTermController.observe_cluster`)
and plans on them when they account for at least the requests this router routed itself
(otherwise, e.g. with workers too old to report, on its own samples as before).

A worker seen for the first time is a baseline (its past is not this window's); one whose counts
fell has restarted, and all its counts are new. Limits: a prefill is counted when it completes
(a mixed worker's local one when its request finishes), not when it arrives; a restarted worker
whose counts passed its old ones before the next sample is undercounted by the old ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from prfaas.router.registry import WorkerRegistry

MAX_BUCKETS = 128
"""Length buckets kept (four per octave: lengths up to 2^32); longer ones join the last."""


def _padded(values: Iterable[int]) -> np.ndarray:
    out = np.zeros(MAX_BUCKETS, dtype=np.int64)
    v = np.fromiter(values, dtype=np.int64)
    head = v[:MAX_BUCKETS]
    out[: head.size] = head
    out[-1] += int(v[MAX_BUCKETS:].sum())
    return out


class ClusterArrivals:
    """Per-worker previous histograms and the summed rises; router event loop only."""

    def __init__(self, registry: WorkerRegistry) -> None:
        self.registry = registry
        self._seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """(prefills, uncached tokens) per length bucket that every worker completed since the
        previous call, summed over the workers."""
        counts = np.zeros(MAX_BUCKETS, dtype=np.int64)
        tokens = np.zeros(MAX_BUCKETS, dtype=np.int64)
        current: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for worker_id, handle in self.registry.workers.items():
            if handle.load is None:
                continue
            now = (
                _padded(handle.load.prefill_length_counts),
                _padded(handle.load.prefill_length_tokens),
            )
            current[worker_id] = now
            before = self._seen.get(worker_id)
            if before is None:
                continue  # first sight: a baseline
            if (now[0] < before[0]).any():
                before = (np.zeros_like(now[0]), np.zeros_like(now[1]))  # restarted
            counts += now[0] - before[0]
            tokens += now[1] - before[1]
        self._seen = current
        return counts, tokens
