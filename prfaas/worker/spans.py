"""A worker's part of a request's trace (prfaas/tracing.py): spans whose parent is the router's
attempt span, read from the call's gRPC metadata. No-op spans when tracing is off.

`prefill` (Prefill RPC): recorded when the call ends, from the flow's report: prefill_queued
(arrival), prefill_started (its first step began), first_layer_shipped (the first layer was handed
to the sender), prefill_done (compute over), last_layer_shipped (the transfer completed).
`generate` (Generate RPC, on a PD worker): admitted, kv_complete (decode-only: the cache arrived),
first_token, finished, as they happen.
"""

from __future__ import annotations

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from prfaas import tracing
from prfaas.worker.prefill_flow import PrefillReport


def start_span(
    name: str, context: grpc.aio.ServicerContext, worker_id: str, request_id: str,
    start_monotonic_s: float | None = None,
) -> trace.Span:  # fmt: skip
    parent = tracing.context_from_grpc(context.invocation_metadata())
    start = None if start_monotonic_s is None else tracing.wall_ns(start_monotonic_s)
    return tracing.tracer().start_span(
        name, context=parent, start_time=start,
        attributes={"prfaas.worker_id": worker_id, "prfaas.worker_request_id": request_id},
    )  # fmt: skip


def record_prefill(
    context: grpc.aio.ServicerContext, worker_id: str, request_id: str, arrived_s: float,
    report: PrefillReport | None, failure: str | None = None,
) -> None:  # fmt: skip
    """The `prefill` span of a finished Prefill call (`arrived_s`: monotonic arrival)."""
    span = start_span("prefill", context, worker_id, request_id, arrived_s)
    if not span.is_recording():
        return
    tracing.event_at(span, "prefill_queued", arrived_s)
    if report is not None:
        started = arrived_s + report.queue_seconds
        tracing.event_at(span, "prefill_started", started)
        tracing.event_at(span, "first_layer_shipped", started + report.first_layer_seconds)
        tracing.event_at(span, "prefill_done", started + report.prefill_seconds)
        tracing.event_at(span, "last_layer_shipped", started + report.transfer_seconds)
        span.set_attributes({
            "prfaas.prompt_tokens": report.num_prompt_tokens,
            "prfaas.cached_tokens": report.num_cached_tokens,
            "prfaas.kv_bytes_sent": report.bytes_sent,
        })  # fmt: skip
    if failure is not None:
        span.set_status(Status(StatusCode.ERROR, failure))
    span.end()
