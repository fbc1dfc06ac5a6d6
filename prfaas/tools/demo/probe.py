"""Counters of a running deployment read before and after something happens (the demo's view of
where one request went: which worker prefilled it, how many KV bytes crossed the link, who decoded).

Each process exports Prometheus text on its `/metrics`; `snapshot` sums every sample of the
counters below per endpoint, `changes` subtracts two snapshots. The demo owns this module.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

# Sample names (as the exposition spells them) whose per-endpoint total the demo reports.
PREFILL_TOKENS = "prfaas_prefill_computed_tokens_total"
DECODE_TOKENS = "prfaas_decode_tokens_total"
KV_SENT = "prfaas_kv_transfer_sent_bytes_total"
KV_RECEIVED = "prfaas_kv_transfer_received_bytes_total"
KV_SEND_SECONDS = "prfaas_kv_transfer_duration_seconds_sum"
ROUTING = "prfaas_routing_decisions_total"
WATCHED = (PREFILL_TOKENS, DECODE_TOKENS, KV_SENT, KV_RECEIVED, KV_SEND_SECONDS)

Snapshot = dict[str, dict[str, float]]
"""Process name -> sample name (or 'routing:route/reason') -> value."""


def _totals(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in WATCHED:
                out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
            elif sample.name == ROUTING:
                key = f"routing:{sample.labels.get('route', '')}/{sample.labels.get('reason', '')}"
                out[key] = out.get(key, 0.0) + float(sample.value)
    return out


def snapshot(endpoints: dict[str, str]) -> Snapshot:
    """Process name -> its watched totals; a process that does not answer gets {}."""
    out: Snapshot = {}
    with httpx.Client(timeout=5.0) as client:
        for name, url in endpoints.items():
            try:
                reply = client.get(url)
                out[name] = _totals(reply.text) if reply.status_code == 200 else {}
            except httpx.HTTPError:
                out[name] = {}
    return out


def changes(before: Snapshot, after: Snapshot) -> Snapshot:
    """Per process, the samples that changed, by how much."""
    out: Snapshot = {}
    for name, values in after.items():
        old = before.get(name, {})
        moved = {k: v - old.get(k, 0.0) for k, v in values.items() if v != old.get(k, 0.0)}
        if moved:
            out[name] = moved
    return out
