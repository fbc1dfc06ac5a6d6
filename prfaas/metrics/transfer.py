"""Metrics of KV transfers and the inter-datacenter TCP links they use."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from prfaas.metrics.stats import (
    TRANSFER_BUCKETS_S,
    TRANSFER_SIZE_BUCKETS_BYTES,
    LinkStats,
    TransferStats,
)


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
        self.capacity = Gauge(
            "prfaas_link_capacity_bytes_per_second",
            "Link capacity the router's short-term control uses: measured (delivery rate, or "
            "egress while a backlog waits), the configured rate until measured.",
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
        self.in_flight = Gauge(
            "prfaas_link_bytes_in_flight",
            "KV bytes sent on the link and not yet acknowledged.",
            link,
            registry=registry,
        )
        self.queued = Gauge(
            "prfaas_link_queued_bytes",
            "KV bytes waiting in the sender for the link (backlog).",
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
        self.in_flight.labels(stats.link).set(stats.bytes_in_flight)
        self.queued.labels(stats.link).set(stats.queued_bytes)
