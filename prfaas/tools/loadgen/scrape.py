"""Reading the deployment's Prometheus endpoints during a run.

`MetricsSampler` polls a list of `/metrics` URLs every `interval_s` and keeps, per poll, the total
of `prfaas_kv_transfer_sent_bytes_total` over all endpoints (KV egress; its rate over time is the
link's load). `routing_decisions` reads `prfaas_routing_decisions_total` from the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

KV_SENT = "prfaas_kv_transfer_sent_bytes_total"
ROUTING = "prfaas_routing_decisions_total"


def sample_values(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` in a Prometheus text exposition, with its labels."""
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((dict(sample.labels), float(sample.value)))
    return out


async def fetch(client: httpx.AsyncClient, url: str) -> str | None:
    try:
        reply = await client.get(url, timeout=5.0)
        return reply.text if reply.status_code == 200 else None
    except httpx.HTTPError:
        return None


def routing_counts(text: str) -> dict[str, float]:
    """Routing decisions keyed 'policy/route/reason'."""
    counts: dict[str, float] = {}
    for labels, value in sample_values(text, ROUTING):
        key = "/".join(labels.get(k, "") for k in ("policy", "route", "reason"))
        counts[key] = counts.get(key, 0.0) + value
    return counts


PREFIX_MOVES = {
    "prfaas_prefix_transfers_total": "moves",
    "prfaas_prefix_transfer_tokens_total": "tokens",
    "prfaas_prefix_transfer_bytes_total": "bytes",
    "prfaas_prefix_transfer_seconds_total": "seconds",
}


def prefix_move_counts(text: str) -> dict[str, float]:
    """The router's cross-cluster prefix moves so far: 'moves/<outcome>' counts, and 'tokens',
    'bytes' and 'seconds' summed over moves ({} when not an exposition)."""
    out: dict[str, float] = {}
    try:
        for name, key in PREFIX_MOVES.items():
            for labels, value in sample_values(text, name):
                k = f"moves/{labels.get('outcome', '')}" if key == "moves" else key
                out[k] = out.get(k, 0.0) + value
    except ValueError:
        return {}
    return out


async def routing_decisions(url: str) -> dict[str, float]:
    """The router's routing decisions so far ({} when the endpoint cannot be read)."""
    async with httpx.AsyncClient() as client:
        text = await fetch(client, url)
    try:
        return routing_counts(text) if text else {}
    except ValueError:  # not a Prometheus exposition (a server without /metrics)
        return {}


def diff_counts(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    keys = sorted(set(after) | set(before))
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0)
        for k in keys
        if after.get(k, 0.0) != before.get(k, 0.0)
    }


@dataclass
class EgressSample:
    t_s: float
    """Seconds from the run's start."""
    sent_bytes: float
    """KV bytes sent so far, summed over every endpoint that answered."""


class MetricsSampler:
    def __init__(self, urls: list[str], interval_s: float = 1.0) -> None:
        self.urls = urls
        self.interval_s = interval_s
        self.samples: list[EgressSample] = []

    async def sample_once(self, client: httpx.AsyncClient, run_start: float) -> None:
        texts = await asyncio.gather(*(fetch(client, u) for u in self.urls))
        total = sum(v for text in texts if text for _, v in sample_values(text, KV_SENT))
        self.samples.append(EgressSample(time.perf_counter() - run_start, total))

    async def run(self, run_start: float, stop: asyncio.Event) -> None:
        """Poll until `stop` is set, with one last poll after it."""
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                await self.sample_once(client, run_start)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
            await self.sample_once(client, run_start)
