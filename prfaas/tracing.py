"""Request timelines as OpenTelemetry spans, one trace id across router, prefill and decode worker.

Off by default: nothing is recorded unless the process's environment asks for it when
`configure()` runs (each process entry point calls it once; `prfaas up` children inherit it):
  PRFAAS_TRACE_FILE=PATH            one JSON object per finished span, appended to PATH
                                    (the process's service name is in each span's resource);
  PRFAAS_TRACE=console              spans printed to stdout by the SDK's console exporter;
  OTEL_EXPORTER_OTLP_ENDPOINT=URL   (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) spans sent by OTLP/gRPC.
Without any of them the OpenTelemetry API stays a no-op (no SDK objects, no cost beyond a call).

Spans: the router's `request` span (root) with events received, routed (target, reason, workers,
threshold), retry (why), first_token, finished; one `attempt` child per attempt (decode_admitted,
kv_complete_at_decode). Its context travels to the workers in gRPC metadata (W3C traceparent,
`grpc_metadata()` / `context_from_grpc()`), where the prefill worker's `prefill` span carries
prefill_queued, prefill_started, first_layer_shipped, prefill_done, last_layer_shipped, and the
decode worker's `generate` span admitted, kv_complete, first_token, finished. Stage events of a
worker are stamped from its own monotonic marks (`event_at`), converted to wall time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

FILE_ENV = "PRFAAS_TRACE_FILE"
CONSOLE_ENV = "PRFAAS_TRACE"
OTLP_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACER_NAME = "prfaas"

_propagator = TraceContextTextMapPropagator()
_enabled = False


def configure(service_name: str, env: dict[str, str] | None = None) -> bool:
    """Install a tracer provider with the exporters the environment names; returns whether
    tracing is on. Called once per process, before the first span."""
    global _enabled
    env = dict(os.environ) if env is None else env
    exporters = _exporters(env)
    if not exporters:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def _exporters(env: dict[str, str]) -> list[Any]:
    out: list[Any] = []
    if env.get(FILE_ENV):
        out.append(JsonLinesExporter(env[FILE_ENV]))
    if env.get(CONSOLE_ENV) == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        out.append(ConsoleSpanExporter())
    if any(env.get(name) for name in OTLP_ENVS):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        out.append(OTLPSpanExporter())  # reads the endpoint and headers from the environment
    return out


def enabled() -> bool:
    return _enabled


def shutdown() -> None:
    """Flush and stop the exporters (at process exit; spans still buffered are written)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def grpc_metadata(span: trace.Span | None = None) -> tuple[tuple[str, str], ...]:
    """The W3C trace context of `span` (default: the current one) as gRPC metadata pairs."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else otel_context.get_current()
    _propagator.inject(carrier, context=ctx)
    return tuple(carrier.items())


def context_from_grpc(metadata: Iterable[tuple[str, Any]] | None) -> otel_context.Context:
    """The caller's trace context from invocation metadata (an empty context when absent)."""
    carrier = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    return _propagator.extract(carrier)


def wall_ns(monotonic_s: float) -> int:
    """A `time.monotonic()` mark as wall-clock nanoseconds (span event timestamps)."""
    return time.time_ns() - int((time.monotonic() - monotonic_s) * 1e9)


def event_at(span: trace.Span, name: str, monotonic_s: float | None, **attributes: Any) -> None:
    """Add stage `name` to `span` at a monotonic mark (skipped when the mark is None)."""
    if monotonic_s is not None and span.is_recording():
        span.add_event(name, attributes or None, timestamp=wall_ns(monotonic_s))


class JsonLinesExporter:
    """SpanExporter writing one compact JSON object per span to a file (local inspection and
    `prfaas trace` style post-processing; several processes may append to one file)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = [json.dumps(json.loads(span.to_json()), separators=(",", ":")) for span in spans]
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
