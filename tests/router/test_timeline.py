"""A request's timeline: one trace across router and workers, and per-stage histograms."""

from __future__ import annotations

import json
import uuid

import pytest
from fake_workers import start_cluster
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from prfaas import tracing
from prfaas.metrics import RouterMetrics
from prfaas.metrics.stages import StageMetrics
from prfaas.router.generation_backend import GenerationRequest
from prfaas.sampling import SamplingParams

_EXPORTER = InMemorySpanExporter()
_ATTACHED: list[InMemorySpanExporter] = []


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The process's tracer provider, recording in memory (installed once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if _EXPORTER not in _ATTACHED:
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        _ATTACHED.append(_EXPORTER)
    _EXPORTER.clear()
    return _EXPORTER


def _events(span) -> list[str]:  # noqa: ANN001
    return [e.name for e in span.events]


async def test_offloaded_request_is_one_trace_with_its_stages(spans) -> None:
    c = await start_cluster(threshold=64)
    c.dispatcher.metrics = RouterMetrics(CollectorRegistry(), "fake")
    c.dispatcher.stages = StageMetrics(c.dispatcher.metrics.registry)
    try:
        req = GenerationRequest(uuid.uuid4().hex, tuple(range(200)), SamplingParams(max_tokens=3))
        async for _ in c.dispatcher.generate(req):
            pass
    finally:
        await c.close()
    (root,) = [s for s in spans.get_finished_spans() if s.name == "request"]
    (attempt,) = [s for s in spans.get_finished_spans() if s.name == "attempt"]
    assert attempt.parent.span_id == root.context.span_id
    assert attempt.context.trace_id == root.context.trace_id
    assert _events(root) == ["received", "routed", "first_token", "finished"]
    routed = root.events[1].attributes
    assert (routed["target"], routed["reason"], routed["prefill_worker"]) == (
        "prfaas", "offloaded", "prfaas-0",
    )  # fmt: skip
    assert _events(attempt) == ["decode_admitted", "kv_complete_at_decode"]
    # Both workers were called with the attempt's trace context (W3C traceparent).
    trace_hex = f"{root.context.trace_id:032x}"
    for worker in ("prfaas-0", "pd-1"):
        (md,) = c.worker(worker).call_metadata
        assert md["traceparent"].split("-")[1] == trace_hex
        assert md["traceparent"].split("-")[2] == f"{attempt.context.span_id:016x}"
    # Per-stage histograms: one observation each for the stages this flow has.
    reg = c.dispatcher.metrics.registry
    for stage in ("route", "decode_admit", "prefill_queue", "first_token", "ttft", "total"):
        count = reg.get_sample_value("prfaas_request_stage_seconds_count", {"stage": stage})
        assert count == 1, stage


async def test_a_retry_is_an_event_with_its_reason(spans) -> None:
    c = await start_cluster(threshold=64)
    try:
        c.worker("prfaas-0").script.prefill_mode = "fail"
        req = GenerationRequest(uuid.uuid4().hex, tuple(range(200)), SamplingParams(max_tokens=2))
        async for _ in c.dispatcher.generate(req):
            pass
    finally:
        await c.close()
    (root,) = [s for s in spans.get_finished_spans() if s.name == "request"]
    assert _events(root) == ["received", "routed", "retry", "routed", "first_token", "finished"]
    assert "prefill on prfaas-0 failed: UNAVAILABLE" in root.events[2].attributes["why"]
    failed, ok = sorted(
        (s for s in spans.get_finished_spans() if s.name == "attempt"), key=lambda s: s.start_time
    )
    assert not failed.status.is_ok and ok.status.is_ok


def test_tracing_is_off_unless_the_environment_asks(tmp_path) -> None:
    assert tracing._exporters({}) == []
    path = tmp_path / "spans.jsonl"
    (exporter,) = tracing._exporters({tracing.FILE_ENV: str(path)})
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("request") as span:
        span.add_event("received")
    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    assert record["name"] == "request" and record["events"][0]["name"] == "received"
