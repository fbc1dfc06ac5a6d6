"""One streamed completion request and what it measured.

The request is `POST {url}/completions` with `stream: true`, `stream_options.include_usage`,
`ignore_eos: true` (exact output lengths) and `temperature: 0`. TTFT is the time to the first
chunk carrying text; inter-token latencies are the gaps between text chunks (a chunk may carry
more than one token when the server batches them); token counts come from the final usage chunk.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from prfaas.tools.loadgen.workloads import RequestSpec


@dataclass
class RequestRecord:
    index: int
    scheduled_s: float
    """When the schedule said to send it, from the run's start."""
    start_s: float = 0.0
    """When it was actually sent, from the run's start."""
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    input_tokens: int = 0
    """Prompt tokens the workload asked for (usage's `prompt_tokens` is `prompt_tokens`)."""
    output_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prefill_cluster: str = ""
    """Cluster that prefilled the prompt (usage's prompt_tokens_details.prefill_cluster, a prfaas
    extension); "" when the server does not say."""
    response_id: str = ""
    """The response's `id` (the router's request id: its log lines and trace spans carry it)."""
    status: int = 0
    """HTTP status; 0 when no response arrived (connection error or timeout)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**data)


def request_body(spec: RequestSpec, model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": spec.prompt,
        "max_tokens": spec.output_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model:
        body["model"] = model
    return body


def _error_text(payload: bytes) -> str:
    try:
        return str(json.loads(payload)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return payload[:200].decode(errors="replace")


async def send_request(
    client: httpx.AsyncClient,
    url: str,
    spec: RequestSpec,
    record: RequestRecord,
    *,
    model: str | None = None,
    timeout_s: float = 600.0,
    run_start: float = 0.0,
) -> RequestRecord:
    """Send `spec`, filling `record` in place (also on failure); never raises."""
    record.input_tokens, record.output_tokens = spec.input_tokens, spec.output_tokens
    t0 = time.perf_counter()
    record.start_s = t0 - run_start
    last: float | None = None
    try:
        async with client.stream(
            "POST",
            f"{url.rstrip('/')}/completions",
            json=request_body(spec, model),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 30.0)),
        ) as reply:
            record.status = reply.status_code
            if reply.status_code != 200:
                record.error = f"HTTP {reply.status_code}: {_error_text(await reply.aread())}"
                return record
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                record.response_id = record.response_id or str(chunk.get("id") or "")
                if "error" in chunk:
                    record.error = f"stream error: {chunk['error'].get('message', chunk['error'])}"
                    break
                now = time.perf_counter()
                if any(c.get("text") for c in chunk.get("choices") or ()):
                    if last is None:
                        record.ttft_s = now - t0
                    else:
                        record.itl_s.append(now - last)
                    last = now
                usage = chunk.get("usage")
                if usage:
                    record.prompt_tokens = int(usage.get("prompt_tokens", 0))
                    record.completion_tokens = int(usage.get("completion_tokens", 0))
                    details = usage.get("prompt_tokens_details") or {}
                    record.cached_tokens = int(details.get("cached_tokens") or 0)
                    record.prefill_cluster = str(details.get("prefill_cluster") or "")
    except httpx.TimeoutException:
        record.error = f"timeout after {timeout_s:g} s"
    except (httpx.HTTPError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    record.e2e_s = time.perf_counter() - t0
    if record.error is None and record.ttft_s is None:
        record.error = "no tokens received"
    return record
