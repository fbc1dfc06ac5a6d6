"""Metrics of the router process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from prfaas.metrics.stats import (
    E2E_BUCKETS_S,
    FINISHED_REASONS,
    ITL_BUCKETS_S,
    TTFT_BUCKETS_S,
    RequestStats,
)


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
        self.threshold_changes = Counter(
            "prfaas_routing_threshold_changes_total",
            "Changes of the threshold t by cause: raise:egress|backlog|loss|queue, lower:calm and "
            "base (short-term control), plan (the long-term controller moved its base).",
            ["reason"],
            registry=registry,
        )
        self.threshold_last_change = Gauge(
            "prfaas_routing_threshold_last_change_timestamp_seconds",
            "Unix time of the latest change of t, per cause (the largest is why t is where it is).",
            ["reason"],
            registry=registry,
        )
        self.planner_leader = Gauge(
            "prfaas_planner_leader",
            "1 while this router's long-term planner may change worker roles (the lease its "
            "local cluster's smallest-id PD worker arbitrates among router replicas), else 0.",
            registry=registry,
        )
        self.num_instances = Gauge(
            "prfaas_num_instances",
            "Instances per cluster and role (N_p and N_d of the local PD cluster).",
            ["cluster", "role"],
            registry=registry,
        )
        self.prefix_transfers = Counter(
            "prfaas_prefix_transfers_total",
            "Cross-cluster prefix cache moves run before a request, by outcome "
            "(imported, failed, skipped).",
            ["outcome"],
            registry=registry,
        )
        self.prefix_transfer_tokens = Counter(
            "prfaas_prefix_transfer_tokens_total",
            "Prefix tokens moved into another cluster's prefix cache.",
            registry=registry,
        )
        self.prefix_transfer_bytes = Counter(
            "prfaas_prefix_transfer_bytes_total",
            "Bytes the holders sent for cross-cluster prefix moves (their ExportPrefix results).",
            registry=registry,
        )
        self.prefix_transfer_seconds = Counter(
            "prfaas_prefix_transfer_seconds_total",
            "Router-side wall time of cross-cluster prefix moves, by outcome (the time a request "
            "waited for its move before it started).",
            ["outcome"],
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

    def record_prefix_transfer(
        self, outcome: str, num_tokens: int, num_bytes: int = 0, seconds: float = 0.0
    ) -> None:
        """Called once per attempted cross-cluster prefix move (see router/prefix_move.py)."""
        self.prefix_transfers.labels(outcome).inc()
        self.prefix_transfer_tokens.inc(num_tokens)
        self.prefix_transfer_bytes.inc(num_bytes)
        self.prefix_transfer_seconds.labels(outcome).inc(seconds)

    def record_threshold_change(self, reason: str) -> None:
        """Called by the control loops each time t moves, with the controller's reason."""
        self.threshold_changes.labels(reason).inc()
        self.threshold_last_change.labels(reason).set_to_current_time()

    def set_control_state(
        self, threshold_tokens: float, num_instances: dict[tuple[str, str], int]
    ) -> None:
        """Called by the control loops; `num_instances` maps (cluster, role) to a count."""
        self.threshold.set(threshold_tokens)
        for (cluster, role), count in num_instances.items():
            self.num_instances.labels(cluster, role).set(count)
