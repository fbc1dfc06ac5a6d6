"""The router's view of its workers and of its threshold controller, exported at scrape time.

The router already knows, from heartbeats and its own bookkeeping, each worker's health, queue and
decode seats, and the short-term controller's state. Exporting them on the router's `/metrics`
lets one scrape (Grafana's `worker` variable, `prfaas top`) see every worker even when the
worker's own metrics endpoint is down or was never configured: a dead worker stays listed with
`healthy 0` and the reason the router took it out of placement.

Read on the scrape (a prometheus `Collector`), never pushed, so nothing here runs per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from prfaas.roles import Role
from prfaas.router.control.short_term import ShortTermController
from prfaas.router.registry import WorkerRegistry

_WORKER_LABELS = ["cluster", "worker", "role"]


class RouterViewCollector(Collector):
    """Per-worker gauges (`prfaas_router_worker_*`) and the controller's base/regime gauges."""

    def __init__(self, registry: WorkerRegistry, short: ShortTermController) -> None:
        self.registry = registry
        self.short = short

    def collect(self) -> Iterator[GaugeMetricFamily]:
        healthy = GaugeMetricFamily(
            "prfaas_router_worker_healthy",
            "1 while the router places work on the worker, 0 while it is out (dead, refusing).",
            labels=_WORKER_LABELS,
        )
        draining = GaugeMetricFamily(
            "prfaas_router_worker_draining", "1 while the worker drains.", labels=_WORKER_LABELS
        )
        out_reason = GaugeMetricFamily(
            "prfaas_router_worker_out_reason_info",
            "Why the router last took the worker out of placement (present only while it is out).",
            labels=["cluster", "worker", "reason"],
        )
        queue = GaugeMetricFamily(
            "prfaas_router_worker_queue_depth",
            "Requests waiting for or in prefill on the worker, as the router counts them.",
            labels=_WORKER_LABELS,
        )
        seats_used = GaugeMetricFamily(
            "prfaas_router_worker_decode_seats_used",
            "Decodes the router has running on the worker (decode and mixed roles).",
            labels=_WORKER_LABELS,
        )
        seats_total = GaugeMetricFamily(
            "prfaas_router_worker_decode_seats",
            "Concurrent decodes the worker admits (its max_num_seqs).",
            labels=_WORKER_LABELS,
        )
        egress = GaugeMetricFamily(
            "prfaas_router_worker_kv_egress_bytes_per_second",
            "KV egress the worker reported in its latest heartbeat.",
            labels=_WORKER_LABELS,
        )
        age = GaugeMetricFamily(
            "prfaas_router_worker_heartbeat_age_seconds",
            "Seconds since the worker last answered the router (-1: never).",
            labels=_WORKER_LABELS,
        )
        now = time.monotonic()
        for handle in list(self.registry.workers.values()):
            labels = [handle.cluster, handle.worker_id, handle.role.value]
            snap = handle.snapshot()
            healthy.add_metric(labels, 1.0 if handle.healthy else 0.0)
            draining.add_metric(labels, 1.0 if snap.draining else 0.0)
            if not handle.healthy and handle.out_reason:
                out_reason.add_metric([handle.cluster, handle.worker_id, handle.out_reason], 1.0)
            queue.add_metric(labels, snap.queue_depth)
            if handle.role in (Role.DECODE, Role.MIXED):
                seats_used.add_metric(labels, handle.inflight_decodes)
                seats_total.add_metric(labels, handle.max_decodes)
            load = handle.load
            egress.add_metric(labels, 0.0 if load is None else load.kv_egress_bytes_per_second)
            age.add_metric(labels, now - handle.last_seen_s if handle.last_seen_s else -1.0)
        yield from (healthy, draining, out_reason, queue, seats_used, seats_total, egress, age)
        yield GaugeMetricFamily(
            "prfaas_routing_threshold_base_tokens",
            "The long-term plan's threshold; the short-term controller never sets t below it.",
            value=self.short.base,
        )
        yield GaugeMetricFamily(
            "prfaas_link_bandwidth_scarce",
            "1 while the short-term controller treats the link as the bottleneck.",
            value=1.0 if self.short.scarce else 0.0,
        )
