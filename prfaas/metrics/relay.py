"""Metrics of the userspace link relay (`prfaas link`): what it carries and how it is shaped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from prfaas.metrics.stats import RelayStats


class RelayMetrics:
    """One relay process: label `link` names the relayed route (listen -> target)."""

    def __init__(self, registry: CollectorRegistry, link: str) -> None:
        self.registry, self.link = registry, link
        labels = ["link"]
        self.bytes = Counter(
            "prfaas_relay_bytes_total", "Bytes the relay has forwarded (both directions).", labels,
            registry=registry,
        )  # fmt: skip
        self._bytes_seen = 0
        self.connections = Gauge(
            "prfaas_relay_connections", "TCP connections open through the relay.", labels,
            registry=registry,
        )  # fmt: skip
        self.rate = Gauge(
            "prfaas_relay_rate_limit_bytes_per_second",
            "Configured rate cap per direction (0: uncapped).", labels, registry=registry,
        )  # fmt: skip
        self.delay = Gauge(
            "prfaas_relay_delay_seconds", "Configured one-way delay.", labels, registry=registry
        )
        self.up = Gauge(
            "prfaas_relay_up", "1 while the relay forwards, 0 while the link is cut or stalled.",
            labels, registry=registry,
        )  # fmt: skip

    def record(self, stats: RelayStats) -> None:
        """Called periodically with the relay's current state."""
        self.bytes.labels(self.link).inc(max(0, stats.bytes_relayed - self._bytes_seen))
        self._bytes_seen = stats.bytes_relayed
        self.connections.labels(self.link).set(stats.connections)
        self.rate.labels(self.link).set(stats.rate_bytes_per_s)
        self.delay.labels(self.link).set(stats.delay_s)
        self.up.labels(self.link).set(1.0 if stats.up else 0.0)
