"""Where the time of a run's requests went: mean and P90 of each stage from the router's
`prfaas_request_stage_seconds` histogram (prfaas/metrics/stages.py), read from /metrics before
and after the run (so only this run's requests count). P90 is interpolated linearly inside its
bucket, as Prometheus' histogram_quantile does."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from prfaas.metrics.stages import STAGE_METRIC, STAGES

Histograms = dict[str, dict[str, float]]
"""stage -> {"le=<bound>": cumulative count, "sum": seconds, "count": n}."""


def stage_histograms(text: str) -> Histograms:
    """The stage histogram in a Prometheus exposition ({} when absent or not an exposition)."""
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:
        return {}
    out: Histograms = {}
    for family in families:
        if family.name != STAGE_METRIC:
            continue
        for s in family.samples:
            stage = s.labels.get("stage", "")
            entry = out.setdefault(stage, {})
            if s.name.endswith("_bucket"):
                entry[f"le={float(s.labels['le'])!r}"] = float(s.value)
            elif s.name.endswith("_sum"):
                entry["sum"] = float(s.value)
            elif s.name.endswith("_count"):
                entry["count"] = float(s.value)
    return out


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """`buckets`: (upper bound, cumulative count) ascending, last bound +inf."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            frac = (rank - lower_count) / width if width else 1.0
            return lower_bound + (bound - lower_bound) * frac
        lower_bound, lower_count = bound, count
    return lower_bound


def stage_summary(after: Histograms, before: Histograms) -> dict[str, dict[str, float]]:
    """Per stage observed during the run: count, mean_s, p90_s (stages in pipeline order)."""
    out: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        a, b = after.get(stage, {}), before.get(stage, {})
        count = a.get("count", 0.0) - b.get("count", 0.0)
        if count <= 0:
            continue
        buckets = sorted(
            (float(k[3:]), v - b.get(k, 0.0)) for k, v in a.items() if k.startswith("le=")
        )
        out[stage] = {
            "count": count,
            "mean_s": (a.get("sum", 0.0) - b.get("sum", 0.0)) / count,
            "p90_s": _quantile(buckets, 0.9),
        }
    return out


def format_stage_table(stages: dict[str, dict[str, float]]) -> str:
    lines = [f"{'stage':<22}{'count':>8}{'mean s':>10}{'P90 s':>10}"]
    for stage, s in stages.items():
        lines.append(f"{stage:<22}{s['count']:>8.0f}{s['mean_s']:>10.4f}{s['p90_s']:>10.4f}")
    return "\n".join(lines)
