"""Every Prometheus metric of every prfaas process, defined in this one file.

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

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# vLLM's bucket lists (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS_S = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
E2E_BUCKETS_S = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
# vLLM's NIXL transfer-time list, extended past 5 s because prfaas ships KV across datacenters.
TRANSFER_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
)
# Powers of two from 2 KiB to 16 GiB, as vLLM's nixl_bytes_transferred.
TRANSFER_SIZE_BUCKETS_BYTES = tuple(float(2**k) for k in range(11, 35))

FINISHED_REASONS = ("stop", "length", "abort", "error")
"""Values of the `finished_reason` label of `prfaas_request_success_total`."""


@dataclass(frozen=True)
class RequestStats:
    """One finished (or aborted) request as the router's HTTP layer saw it."""

    finished_reason: str
    """One of FINISHED_REASONS."""
    e2e_s: float
    ttft_s: float | None
    """None when no token was produced."""
    itl_s: Sequence[float]
    """One gap per generated token after the first."""
    num_prompt_tokens: int
    num_generation_tokens: int
    num_cached_tokens: int


@dataclass(frozen=True)
class WorkerStats:
    """A worker's scheduler state, sampled once per scheduler step or load report."""

    worker: str
    num_requests_running: int
    num_requests_waiting: int
    kv_cache_usage: float
    """Fraction of KV blocks in use, 0..1."""


@dataclass(frozen=True)
class TransferStats:
    """One KV transfer, recorded by the side that finished it (sender or receiver)."""

    link: str
    direction: str
    """"sent" or "received"."""
    num_bytes: int
    duration_s: float
    exposed_s: float
    """Time the decode side waited for KV after prefill compute finished (not overlapped)."""


@dataclass(frozen=True)
class LinkStats:
    """TCP and goodput telemetry of one inter-datacenter link, sampled periodically."""

    link: str
    goodput_bytes_per_s: float
    utilization: float
    """Goodput divided by the link's nominal bandwidth, 0..1."""
    rtt_s: float
    num_retransmits: int
    """Retransmitted segments since the previous sample."""


class RouterMetrics:
    """Metrics of the router process: request latencies, tokens, routing and control state."""

    def __init__(self, registry: CollectorRegistry, model_name: str = "prfaas") -> None:
        self.registry = registry
        self.model_name = model_name
        m = ["model_name"]
        self.ttft = Histogram(
            "prfaas_time_to_first_token_seconds",
            "Time from request arrival to the first generated token.",
            m,
            registry=registry,
            buckets=TTFT_BUCKETS_S,
        )
        self.itl = Histogram(
            "prfaas_inter_token_latency_seconds",
            "Time between consecutive generated tokens of a request.",
            m,
            registry=registry,
            buckets=ITL_BUCKETS_S,
        )
        self.e2e = Histogram(
            "prfaas_e2e_request_latency_seconds",
            "Time from request arrival to its last token.",
            m,
            registry=registry,
            buckets=E2E_BUCKETS_S,
        )
        self.prompt_tokens = Counter(
            "prfaas_prompt_tokens_total",
            "Prompt tokens of admitted requests.",
            m,
            registry=registry,
        )
        self.generation_tokens = Counter(
            "prfaas_generation_tokens_total", "Generated tokens.", m, registry=registry
        )
        self.cached_prompt_tokens = Counter(
            "prfaas_prompt_cached_tokens_total",
            "Prompt tokens served from a prefix cache, as reported in usage.",
            m,
            registry=registry,
        )
        self.request_success = Counter(
            "prfaas_request_success_total",
            "Finished requests by finish reason.",
            [*m, "finished_reason"],
            registry=registry,
        )
        self.http_errors = Counter(
            "prfaas_http_errors_total",
            "Requests answered with an HTTP error, by status code.",
            ["status_code"],
            registry=registry,
        )
        self.prefix_hit_tokens = Counter(
            "prfaas_router_prefix_hit_tokens_total",
            "Prompt tokens the global prefix index found cached, per cluster.",
            ["cluster"],
            registry=registry,
        )
        self.routing_decisions = Counter(
            "prfaas_routing_decisions_total",
            "Routing decisions by policy, chosen route and reason.",
            ["policy", "route", "reason"],
            registry=registry,
        )
        self.threshold = Gauge(
            "prfaas_routing_threshold_tokens",
            "Current uncached-length threshold t above which prefill is offloaded.",
            registry=registry,
        )
        self.num_instances = Gauge(
            "prfaas_num_instances",
            "Instances per cluster and role (N_p and N_d of the local PD cluster).",
            ["cluster", "role"],
            registry=registry,
        )
        for reason in FINISHED_REASONS:
            self.request_success.labels(model_name, reason)

    def record_request(self, stats: RequestStats) -> None:
        """Called once per request when it finishes, fails or is aborted."""
        name = self.model_name
        self.request_success.labels(name, stats.finished_reason).inc()
        self.e2e.labels(name).observe(stats.e2e_s)
        if stats.ttft_s is not None:
            self.ttft.labels(name).observe(stats.ttft_s)
        itl = self.itl.labels(name)
        for gap in stats.itl_s:
            itl.observe(gap)
        self.prompt_tokens.labels(name).inc(stats.num_prompt_tokens)
        self.generation_tokens.labels(name).inc(stats.num_generation_tokens)
        self.cached_prompt_tokens.labels(name).inc(stats.num_cached_tokens)

    def record_http_error(self, status_code: int) -> None:
        self.http_errors.labels(str(status_code)).inc()

    def record_routing(
        self, policy: str, route: str, reason: str, cluster: str, num_prefix_hit_tokens: int
    ) -> None:
        """Called once per routed request; `route` is e.g. "local" or "offload"."""
        self.routing_decisions.labels(policy, route, reason).inc()
        self.prefix_hit_tokens.labels(cluster).inc(num_prefix_hit_tokens)

    def set_control_state(
        self, threshold_tokens: float, num_instances: dict[tuple[str, str], int]
    ) -> None:
        """Called by the control loops; `num_instances` maps (cluster, role) to a count."""
        self.threshold.set(threshold_tokens)
        for (cluster, role), count in num_instances.items():
            self.num_instances.labels(cluster, role).set(count)


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


class TransferMetrics:
    """Metrics of the KV transfer endpoints (in prefill and PD workers) and their TCP links."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        link = ["link"]
        self.sent_bytes = Counter(
            "prfaas_kv_transfer_sent_bytes_total", "KV cache bytes sent.", link, registry=registry
        )
        self.received_bytes = Counter(
            "prfaas_kv_transfer_received_bytes_total",
            "KV cache bytes received.",
            link,
            registry=registry,
        )
        self.size = Histogram(
            "prfaas_kv_transfer_size_bytes",
            "KV cache bytes per transfer.",
            ["link", "direction"],
            registry=registry,
            buckets=TRANSFER_SIZE_BUCKETS_BYTES,
        )
        self.duration = Histogram(
            "prfaas_kv_transfer_duration_seconds",
            "Time from the first to the last KV frame of a transfer.",
            ["link", "direction"],
            registry=registry,
            buckets=TRANSFER_BUCKETS_S,
        )
        self.exposed = Histogram(
            "prfaas_kv_transfer_exposed_seconds",
            "Transfer time not hidden behind prefill compute.",
            link,
            registry=registry,
            buckets=TRANSFER_BUCKETS_S,
        )
        self.failures = Counter(
            "prfaas_kv_transfer_failures_total",
            "Failed transfers by kind (e.g. timeout, reset, digest, aborted).",
            ["link", "kind"],
            registry=registry,
        )
        self.goodput = Gauge(
            "prfaas_link_goodput_bytes_per_second",
            "Application bytes per second delivered over the link.",
            link,
            registry=registry,
        )
        self.utilization = Gauge(
            "prfaas_link_utilization_ratio",
            "Link goodput over its nominal bandwidth (0..1).",
            link,
            registry=registry,
        )
        self.rtt = Gauge(
            "prfaas_link_rtt_seconds",
            "Smoothed TCP round-trip time of the link.",
            link,
            registry=registry,
        )
        self.retransmits = Counter(
            "prfaas_link_retransmits_total",
            "TCP segments retransmitted on the link.",
            link,
            registry=registry,
        )

    def record_transfer(self, stats: TransferStats) -> None:
        """Called once per completed transfer by the side that completed it."""
        total = self.sent_bytes if stats.direction == "sent" else self.received_bytes
        total.labels(stats.link).inc(stats.num_bytes)
        self.size.labels(stats.link, stats.direction).observe(stats.num_bytes)
        self.duration.labels(stats.link, stats.direction).observe(stats.duration_s)
        if stats.direction == "received":
            self.exposed.labels(stats.link).observe(stats.exposed_s)

    def record_failure(self, link: str, kind: str) -> None:
        self.failures.labels(link, kind).inc()

    def record_link(self, stats: LinkStats) -> None:
        """Called by the periodic TCP_INFO sampler of each link."""
        self.goodput.labels(stats.link).set(stats.goodput_bytes_per_s)
        self.utilization.labels(stats.link).set(stats.utilization)
        self.rtt.labels(stats.link).set(stats.rtt_s)
        self.retransmits.labels(stats.link).inc(stats.num_retransmits)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The `/metrics` body and its content type for one registry."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
    """Serve `/metrics` for `registry` from a daemon thread (worker and relay processes; the
    router serves it from its HTTP app instead)."""
    start_http_server(port, addr=addr, registry=registry)
