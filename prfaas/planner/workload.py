"""Distributions of the uncached input length L and the threshold split they induce.

The analytical model needs, for a threshold t (paper Table 4):
  p       = P(L > t)        fraction of requests offloaded to PrfaaS
  l_long  = E[L | L > t]    the length that represents every PrfaaS request
  l_short = E[L | L <= t]   the length that represents every PD-P request
Both distributions below return these for a whole array of thresholds at once. Where a side is
empty (p = 0 or p = 1) its conditional mean is NaN; the model treats that stage as unused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ThresholdSplit:
    """p, l_short and l_long for each threshold in `thresholds` (all [num_thresholds])."""

    thresholds: np.ndarray
    p: np.ndarray
    l_short: np.ndarray
    l_long: np.ndarray


class LengthDistribution(Protocol):
    """What the planner needs of a length distribution."""

    @property
    def mean(self) -> float: ...

    @property
    def max_length(self) -> float: ...

    def split(self, thresholds: np.ndarray) -> ThresholdSplit: ...


def _conditional_means(
    mass_le: np.ndarray, partial_le: np.ndarray, total_partial: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From P(L<=t) and E[L; L<=t] to (p, l_short, l_long), NaN where a side is empty."""
    p = np.clip(1.0 - mass_le, 0.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        l_short = np.where(mass_le > 1e-12, partial_le / mass_le, np.nan)
        l_long = np.where(p > 1e-12, (total_partial - partial_le) / p, np.nan)
    return p, l_short, l_long


@dataclass(frozen=True)
class TruncatedLogNormal:
    """ln L ~ N(mu, sigma^2), truncated (renormalised) to [min_length, max_length].

    Closed forms: with Phi the standard normal CDF and z(x) = (ln x - mu) / sigma,
    P(a < L <= x) = Phi(z(x)) - Phi(z(a)) and
    E[L; a < L <= x] = exp(mu + sigma^2/2) * (Phi(z(x) - sigma) - Phi(z(a) - sigma)).
    """

    mu: float
    sigma: float
    min_length: float
    max_length: float

    def _cdf_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unnormalised (mass, partial mean) on [min_length, x], x clipped to the support."""
        x = np.clip(np.asarray(x, dtype=float), self.min_length, self.max_length)
        z = (np.log(x) - self.mu) / self.sigma
        z0 = (math.log(self.min_length) - self.mu) / self.sigma
        scale = math.exp(self.mu + self.sigma**2 / 2)
        mass = _phi(z) - _phi(np.asarray(z0))
        partial = scale * (_phi(z - self.sigma) - _phi(np.asarray(z0 - self.sigma)))
        return mass, partial

    @property
    def _total(self) -> tuple[float, float]:
        mass, partial = self._cdf_parts(np.asarray([self.max_length]))
        return float(mass[0]), float(partial[0])

    @property
    def mean(self) -> float:
        mass, partial = self._total
        return partial / mass

    def split(self, thresholds: np.ndarray) -> ThresholdSplit:
        t = np.asarray(thresholds, dtype=float)
        total_mass, total_partial = self._total
        mass, partial = self._cdf_parts(t)
        mass = np.where(t < self.min_length, 0.0, mass / total_mass)
        partial = np.where(t < self.min_length, 0.0, partial / total_mass)
        p, l_short, l_long = _conditional_means(mass, partial, total_partial / total_mass)
        return ThresholdSplit(t, p, l_short, l_long)

    def scaled(self, factor: float) -> TruncatedLogNormal:
        """The distribution of factor * L (e.g. uncached length under a uniform hit rate)."""
        shift = math.log(factor)
        return TruncatedLogNormal(
            self.mu + shift, self.sigma, self.min_length * factor, self.max_length * factor
        )


_erf = np.vectorize(math.erf, otypes=[float])


def _phi(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF, elementwise."""
    return 0.5 * (1.0 + _erf(np.asarray(z, dtype=float) / math.sqrt(2.0)))


@dataclass(frozen=True)
class EmpiricalLengths:
    """The empirical distribution of observed uncached lengths (each sample weight 1/n)."""

    lengths: np.ndarray
    """[num_samples] float, sorted ascending; at least one sample."""

    @classmethod
    def from_samples(cls, samples: list[int] | np.ndarray) -> EmpiricalLengths:
        arr = np.sort(np.asarray(samples, dtype=float))
        if arr.size == 0:
            raise ValueError("an empirical length distribution needs at least one sample")
        return cls(arr)

    @property
    def mean(self) -> float:
        return float(self.lengths.mean())

    @property
    def max_length(self) -> float:
        return float(self.lengths[-1])

    def split(self, thresholds: np.ndarray) -> ThresholdSplit:
        t = np.asarray(thresholds, dtype=float)
        n = self.lengths.size
        cumsum = np.concatenate([[0.0], np.cumsum(self.lengths)])
        count_le = np.searchsorted(self.lengths, t, side="right")
        p, l_short, l_long = _conditional_means(count_le / n, cumsum[count_le] / n, cumsum[-1] / n)
        return ThresholdSplit(t, p, l_short, l_long)


def uncached_lengths_from_trace(path: str | Path, block_size: int = 512) -> list[int]:
    """Uncached input lengths of a Mooncake JSONL trace under an unbounded prefix cache.

    Requests are replayed in timestamp order. A request's cached prefix is its longest run of
    leading `hash_ids` already seen (each id is one `block_size`-token block whose hash covers
    the whole prefix before it), capped at its input length; then all its blocks enter the cache.
    At least one token is always computed (the last prompt token must run to sample).
    """
    records = []
    with Path(path).open() as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
    records.sort(key=lambda r: r.get("timestamp", 0))
    seen: set[int] = set()
    uncached: list[int] = []
    for rec in records:
        hits = 0
        for h in rec["hash_ids"]:
            if h not in seen:
                break
            hits += 1
        length = int(rec["input_length"])
        uncached.append(max(1, length - min(length, hits * block_size)))
        seen.update(rec["hash_ids"])
    return uncached
