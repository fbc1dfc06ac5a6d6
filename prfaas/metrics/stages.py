"""Per-stage latency of a request at the router: where a TTFT went (`prfaas_request_stage_seconds`).

Stages of a finished request (each observed once, in seconds):
  route                 received -> routing decision (the router's own work)
  decode_admit          attempt start -> the decode worker's `Admitted` (seat and KV preallocation)
  prefill_queue         the prefill worker's queue wait (PrefillResult.queue_seconds)
  prefill_compute       its compute, first to last layer (PrefillResult.prefill_seconds)
  kv_transfer_exposed   transfer time after the compute ended (PrefillResult.exposed_...)
  first_token           attempt start -> first token at the router (the flow's TTFT part)
  ttft                  received -> first token (includes earlier failed attempts)
  decode                first token -> finished
  total                 received -> finished
The three prefill stages exist only for two-worker flows (the prefill worker reports them). The
prefill starts with the decode admission (router/two_worker_handshake.py), so decode_admit overlaps
prefill_queue and prefill_compute; a cache computed before the decode worker reserved its memory
waits to be sent, and that wait shows as kv_transfer_exposed.
`prfaas bench serve` and `prfaas experiment` read this histogram from /metrics before and after a
run and print the mean and P90 of each stage.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

STAGES = (
    "route",
    "decode_admit",
    "prefill_queue",
    "prefill_compute",
    "kv_transfer_exposed",
    "first_token",
    "ttft",
    "decode",
    "total",
)
STAGE_METRIC = "prfaas_request_stage_seconds"
STAGE_BUCKETS_S = (
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0,
)  # fmt: skip


class StageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            STAGE_METRIC,
            "Seconds a request spent in each stage (see prfaas/metrics/stages.py).",
            ["stage"],
            registry=registry,
            buckets=STAGE_BUCKETS_S,
        )

    def observe(self, stage: str, seconds: float) -> None:
        assert stage in STAGES, stage
        self.seconds.labels(stage).observe(max(0.0, seconds))
