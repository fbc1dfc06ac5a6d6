"""One request's timeline at the router: its trace spans and its per-stage histograms.

The dispatcher creates a `RequestTimeline` per request and tells it what happened (routed, an
attempt started or ended, a token, the end); the timeline turns that into the `request` span and
its `attempt` children (prfaas/tracing.py: one trace id, carried to both workers in the attempt's
gRPC metadata) and into `prfaas_request_stage_seconds` observations (prfaas/metrics/stages.py).
Tracing off: the spans are the API's no-op spans; the histograms are always recorded.
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from prfaas import tracing
from prfaas.metrics.stages import StageMetrics
from prfaas.router.attempt import Attempt
from prfaas.router.policy import RouteDecision


class RequestTimeline:
    def __init__(self, request_id: str, num_prompt_tokens: int, stages: StageMetrics | None):
        self.stages = stages
        self.received = time.monotonic()
        self.span = tracing.tracer().start_span(
            "request", attributes={"prfaas.request_id": request_id,
                                   "prfaas.prompt_tokens": num_prompt_tokens},
        )  # fmt: skip
        self.span.add_event("received")
        self._routed = False
        self._first_token_at: float | None = None
        self._attempt_span: trace.Span | None = None
        self._attempt_at = 0.0

    def _observe(self, stage: str, seconds: float | None) -> None:
        if self.stages is not None and seconds is not None:
            self.stages.observe(stage, seconds)

    def routed(self, d: RouteDecision, num_attempt: int) -> None:
        if not self._routed:
            self._routed = True
            self._observe("route", time.monotonic() - self.received)
        target = d.target.value if d.target is not None else "none"
        self.span.add_event("routed", {
            "attempt": num_attempt, "target": target, "reason": d.reason.value,
            "prefill_worker": d.prefill_worker or "", "decode_worker": d.decode_worker or "",
            "cached_tokens": d.cached_tokens, "incremental_tokens": d.incremental_tokens,
            "threshold": d.threshold,
        })  # fmt: skip

    def attempt_started(self, attempt: Attempt) -> None:
        """Open the attempt's span and hand its trace context to the attempt's gRPC calls."""
        ctx = trace.set_span_in_context(self.span)
        self._attempt_span = tracing.tracer().start_span(
            "attempt", context=ctx, attributes={
                "prfaas.worker_request_id": attempt.worker_request_id,
                "prfaas.prefill_worker": attempt.prefill.worker_id,
                "prfaas.decode_worker": attempt.decode.worker_id,
            },
        )  # fmt: skip
        self._attempt_at = time.monotonic()
        attempt.trace_metadata = tracing.grpc_metadata(self._attempt_span)

    def token(self) -> None:
        if self._first_token_at is None:
            self._first_token_at = time.monotonic()
            self.span.add_event("first_token")
            self._observe("ttft", self._first_token_at - self.received)

    def attempt_over(self, attempt: Attempt, failure: str | None) -> None:
        """Close the attempt's span (its stage events stamped from the attempt's marks); a
        failure is also a `retry` event on the request."""
        span, self._attempt_span = self._attempt_span, None
        if span is None:
            return
        at = self._attempt_at
        for name, after in (("decode_admitted", attempt.admitted_after_s),
                            ("kv_complete_at_decode", attempt.first_token_after_s)):  # fmt: skip
            tracing.event_at(span, name, None if after is None else at + after)
        res = attempt.prefill_result
        if res is not None:
            span.set_attributes({
                "prfaas.prefill.queue_seconds": res.queue_seconds,
                "prfaas.prefill.compute_seconds": res.prefill_seconds,
                "prfaas.prefill.transfer_seconds": res.transfer_seconds,
                "prfaas.prefill.bytes_sent": res.bytes_sent,
            })  # fmt: skip
        if failure is not None:
            span.set_status(Status(StatusCode.ERROR, failure))
            self.span.add_event("retry", {"why": failure})
        span.end()

    def finished(self, attempt: Attempt, finish_reason: str) -> None:
        now = time.monotonic()
        self._observe("decode_admit", attempt.admitted_after_s)
        self._observe("first_token", attempt.first_token_after_s)
        res = attempt.prefill_result
        if res is not None:
            self._observe("prefill_queue", res.queue_seconds)
            self._observe("prefill_compute", res.prefill_seconds)
            self._observe("kv_transfer_exposed", res.exposed_transfer_seconds)
        if self._first_token_at is not None:
            self._observe("decode", now - self._first_token_at)
        self._observe("total", now - self.received)
        self.span.add_event("finished", {"finish_reason": finish_reason})

    def end(self, error: str | None = None) -> None:
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, error))
        self.span.end()
