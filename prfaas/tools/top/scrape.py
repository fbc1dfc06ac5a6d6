"""One scrape of a Prometheus text endpoint, parsed into samples `prfaas top` can query.

Kept apart from what the numbers mean (`snapshot.py`) so the parsing is tested on real text and
the view on hand-made scrapes alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
"""Label pairs of one sample, sorted by name (hashable, order-independent)."""


@dataclass(frozen=True)
class Scrape:
    """Samples of one endpoint at one time: sample name -> {labels: value}.

    `error` is set (and `samples` empty) when the endpoint could not be read.
    """

    url: str
    taken_at_s: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def series(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})

    def value(self, name: str, default: float | None = None, **labels: str) -> float | None:
        """The one sample of `name` whose labels include `labels` (sum if several match)."""
        hits = [v for k, v in self.series(name).items() if _matches(k, labels)]
        return sum(hits) if hits else default

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """`name` summed per value of `label` (e.g. errors per status code)."""
        out: dict[str, float] = {}
        for key, value in self.series(name).items():
            out[dict(key).get(label, "")] = out.get(dict(key).get(label, ""), 0.0) + value
        return out

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """Cumulative histogram `name` as sorted (upper bound, count), summed over other labels."""
        per_bound: dict[float, float] = {}
        for key, value in self.series(f"{name}_bucket").items():
            bound = float(dict(key)["le"])
            per_bound[bound] = per_bound.get(bound, 0.0) + value
        return sorted(per_bound.items())


def _matches(key: Labels, wanted: dict[str, str]) -> bool:
    have = dict(key)
    return all(have.get(k) == v for k, v in wanted.items())


def parse_scrape(url: str, text: str, taken_at_s: float) -> Scrape:
    """Parse Prometheus text exposition (what every prfaas process serves on /metrics)."""
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = float(sample.value)
    return Scrape(url, taken_at_s, samples)


def failed_scrape(url: str, taken_at_s: float, error: str) -> Scrape:
    return Scrape(url, taken_at_s, {}, error or "unreachable")


def quantile(buckets: Iterable[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly inside its bucket (as
    Prometheus' histogram_quantile does); None when it holds no observations."""
    points = list(buckets)
    if not points or points[-1][1] <= 0:
        return None
    rank = q * points[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # above the largest finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def bucket_delta(
    now: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Observations between two scrapes of one histogram (same bounds), cumulative per bound."""
    old = dict(before)
    return [(bound, count - old.get(bound, 0.0)) for bound, count in now]
