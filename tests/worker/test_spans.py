"""The prefill worker's span: a child of the router's attempt span (gRPC metadata), with its
stages stamped from the flow's report."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from prfaas import tracing
from prfaas.worker.prefill_flow import PrefillReport
from prfaas.worker.spans import record_prefill


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_prefill_span_joins_the_router_trace_with_stage_times() -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.tracer().start_as_current_span("attempt") as attempt:
        metadata = tracing.grpc_metadata()
    arrived = time.monotonic() - 2.0
    report = PrefillReport(first_token=5, num_prompt_tokens=100, num_cached_tokens=0,
                           queue_seconds=0.5, prefill_seconds=1.0, transfer_seconds=1.2,
                           exposed_transfer_seconds=0.2, bytes_sent=4096,
                           first_layer_seconds=0.25)  # fmt: skip
    record_prefill(_Context(metadata), "prfaas-0", "r.0", arrived, report)
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "prefill"]
    assert span.context.trace_id == attempt.get_span_context().trace_id
    assert span.parent.span_id == attempt.get_span_context().span_id
    names = [e.name for e in span.events]
    assert names == ["prefill_queued", "prefill_started", "first_layer_shipped", "prefill_done",
                     "last_layer_shipped"]  # fmt: skip
    t = {e.name: e.timestamp for e in span.events}
    assert abs((t["prefill_started"] - t["prefill_queued"]) / 1e9 - 0.5) < 0.01
    assert abs((t["first_layer_shipped"] - t["prefill_started"]) / 1e9 - 0.25) < 0.01
    assert abs((t["prefill_done"] - t["prefill_started"]) / 1e9 - 1.0) < 0.01
    assert abs((t["last_layer_shipped"] - t["prefill_started"]) / 1e9 - 1.2) < 0.01
    assert span.attributes["prfaas.kv_bytes_sent"] == 4096
