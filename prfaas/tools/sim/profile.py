"""Scalar prefill-time and KV-size lookups from a planner `PrefillProfile` (the emulated backend's
numbers, already scaled by `prfaas.tools.experiment.scale.scaled_profile`).

Same rule as the emulated backend: linear between rows, linearly extrapolated from the end
segments; a chunk [s, e) costs P(e) - P(s), plus P(0) (the per-request overhead) on a request's
first chunk. Pure-Python bisect: numpy's per-call overhead dominates at one value per call.
"""

from __future__ import annotations

from bisect import bisect_left

from prfaas.planner.profiles import PrefillProfile


class ProfileLookup:
    def __init__(self, profile: PrefillProfile) -> None:
        self.name = profile.name
        self._xs = [float(x) for x in profile.input_tokens]
        self._secs = [float(y) for y in profile.prefill_seconds]
        self._kv = [float(y) for y in profile.kv_bytes]
        self.overhead_s = self.seconds(0.0)

    def _interp(self, x: float, ys: list[float]) -> float:
        xs = self._xs
        i = min(max(bisect_left(xs, x) - 1, 0), len(xs) - 2)
        return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])

    def seconds(self, tokens: float) -> float:
        """P(n): profiled seconds to prefill n tokens from scratch."""
        return self._interp(tokens, self._secs)

    def kv_bytes(self, tokens: float) -> float:
        """S_kv(n): KV blocks plus linear state of an n-token prompt."""
        return self._interp(tokens, self._kv)

    def chunk_seconds(self, start: int, end: int, first: bool) -> float:
        return self.seconds(end) - self.seconds(start) + (self.overhead_s if first else 0.0)
