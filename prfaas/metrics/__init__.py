"""Every Prometheus metric of every prfaas process, defined in this one package.

Statistics are data, exporters are separate: components fill the plain dataclasses below
(`RequestStats`, `WorkerStats`, `TransferStats`, `LinkStats`) and hand them to a metric group,
which is the only code that touches `prometheus_client`. Each group registers its metrics on the
`CollectorRegistry` it is given, so tests and several components in one process never collide;
a process that runs one router and one worker creates both groups on the same registry.

Naming follows the Prometheus rules (and passes `promtool check metrics`): the single `prfaas_`
prefix, base units as plural suffixes, counters ending in `_total`, ratios in 0..1. Histogram
buckets reuse vLLM's lists so existing dashboards and SLO thresholds carry over. Request ids never
become label values; labels are workers, clusters, links, policies and small enums.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from prfaas.metrics.relay import RelayMetrics
from prfaas.metrics.router import RouterMetrics
from prfaas.metrics.stats import (
    E2E_BUCKETS_S,
    FINISHED_REASONS,
    ITL_BUCKETS_S,
    TRANSFER_BUCKETS_S,
    TRANSFER_SIZE_BUCKETS_BYTES,
    TTFT_BUCKETS_S,
    LinkStats,
    RelayStats,
    RequestStats,
    TransferStats,
    WorkerStats,
)
from prfaas.metrics.transfer import TransferMetrics
from prfaas.metrics.worker import WorkerMetrics

__all__ = [
    "E2E_BUCKETS_S",
    "FINISHED_REASONS",
    "ITL_BUCKETS_S",
    "TRANSFER_BUCKETS_S",
    "TRANSFER_SIZE_BUCKETS_BYTES",
    "TTFT_BUCKETS_S",
    "LinkStats",
    "RelayMetrics",
    "RelayStats",
    "RequestStats",
    "RouterMetrics",
    "TransferMetrics",
    "TransferStats",
    "WorkerMetrics",
    "WorkerStats",
    "render",
    "serve",
]


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The `/metrics` body and its content type for one registry."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
    """Serve `/metrics` for `registry` from a daemon thread (worker and relay processes; the
    router serves it from its HTTP app instead)."""
    start_http_server(port, addr=addr, registry=registry)
