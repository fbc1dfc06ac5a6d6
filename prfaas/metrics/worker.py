"""Metrics of prefill and PD worker processes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from prfaas.metrics.stats import WorkerStats


class WorkerMetrics:
    """Metrics of a prefill or PD worker process (labelled by worker so several can share one)."""

    def __init__(self, registry: CollectorRegistry, cluster: str) -> None:
        self.registry = registry
        self.cluster = cluster
        w = ["cluster", "worker"]
        self.running = Gauge(
            "prfaas_num_requests_running",
            "Requests in the worker's running batch.",
            w,
            registry=registry,
        )
        self.waiting = Gauge(
            "prfaas_num_requests_waiting", "Requests queued at the worker.", w, registry=registry
        )
        self.kv_usage = Gauge(
            "prfaas_kv_cache_usage_ratio",
            "Fraction of the worker's KV blocks in use (0..1).",
            w,
            registry=registry,
        )
        self.prefix_queries = Counter(
            "prfaas_prefix_cache_queries_total",
            "Prompt tokens looked up in the worker's prefix cache.",
            w,
            registry=registry,
        )
        self.prefix_hits = Counter(
            "prfaas_prefix_cache_hits_total",
            "Prompt tokens found in the worker's prefix cache.",
            w,
            registry=registry,
        )
        self.prefill_tokens = Counter(
            "prfaas_prefill_computed_tokens_total",
            "Prompt tokens the worker computed (cache misses).",
            w,
            registry=registry,
        )
        self.decode_tokens = Counter(
            "prfaas_decode_tokens_total", "Tokens the worker decoded.", w, registry=registry
        )

    def record_step(self, stats: WorkerStats) -> None:
        """Called after each scheduler step with the worker's queue state."""
        labels = (self.cluster, stats.worker)
        self.running.labels(*labels).set(stats.num_requests_running)
        self.waiting.labels(*labels).set(stats.num_requests_waiting)
        self.kv_usage.labels(*labels).set(stats.kv_cache_usage)

    def record_prefix_lookup(self, worker: str, num_query_tokens: int, num_hit_tokens: int) -> None:
        """Called once per admitted prompt; hits count toward this worker's cluster."""
        self.prefix_queries.labels(self.cluster, worker).inc(num_query_tokens)
        self.prefix_hits.labels(self.cluster, worker).inc(num_hit_tokens)

    def record_tokens(self, worker: str, num_prefill_tokens: int, num_decode_tokens: int) -> None:
        self.prefill_tokens.labels(self.cluster, worker).inc(num_prefill_tokens)
        self.decode_tokens.labels(self.cluster, worker).inc(num_decode_tokens)
