"""Part 1 of the demo: one long request through the real model, and where it went.

The default topology (torch backend, the embedded `small` model) is started once; one prompt
longer than the router's threshold t is sent through the OpenAI endpoint, so the router offloads
its prefill to the PrfaaS cluster, whose worker streams the KV over the emulated link to a PD
decode worker. What each process did is read from the metrics the processes export (probe.py),
so the printed path is what happened, not what the policy should have done.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx

from prfaas.launcher.deployment import Deployment
from prfaas.tools.demo import probe
from prfaas.tools.loadgen.client import RequestRecord, send_request
from prfaas.tools.loadgen.prompts import PromptFactory
from prfaas.tools.loadgen.workloads import RequestSpec
from prfaas.topology import Topology


@dataclass
class OneRequest:
    record: RequestRecord
    threshold_tokens: int
    moved: probe.Snapshot
    """Process name -> counters that changed while the request ran."""

    def lines(self) -> list[str]:
        r, out = self.record, []
        if not r.ok:
            return [f"  the request failed: {r.error}"]
        routes = [k.split(":", 1)[1] for k in self.moved.get("router", {}) if k.startswith("rout")]
        route = ", ".join(routes) or "unknown (router metrics unreadable)"
        out.append(
            f"  router: {r.prompt_tokens}-token prompt > t = {self.threshold_tokens} -> {route}"
        )
        for name, moved in self.moved.items():
            if moved.get(probe.PREFILL_TOKENS):
                out.append(f"  prefill: {name} computed {moved[probe.PREFILL_TOKENS]:.0f} tokens")
            elif moved.get(probe.KV_SENT):
                out.append(f"  prefill: {name} (the worker whose KV left for the decoder)")
        for name, moved in self.moved.items():
            if moved.get(probe.KV_SENT):
                out.append(
                    f"  KV: {name} sent {moved[probe.KV_SENT] / 1e6:.2f} MB, streamed layer by "
                    f"layer over {moved.get(probe.KV_SEND_SECONDS, 0.0) * 1000:.0f} ms while the "
                    "prefill ran, across the emulated cross-datacenter link"
                )
        for name, moved in self.moved.items():
            if moved.get(probe.DECODE_TOKENS):
                out.append(f"  decode: {name} generated {moved[probe.DECODE_TOKENS]:.0f} tokens")
        itl = sorted(r.itl_s)
        itl_ms = f"{itl[len(itl) // 2] * 1000:.0f} ms" if itl else "-"
        out.append(
            f"  timing (client): first token after {(r.ttft_s or 0) * 1000:.0f} ms, "
            f"median inter-token {itl_ms}, all {r.completion_tokens} tokens after "
            f"{(r.e2e_s or 0) * 1000:.0f} ms"
        )
        return out


def run_one_request(
    topo: Topology, topology_path: Path, log_dir: Path, prompt_tokens: int, output_tokens: int
) -> OneRequest:
    """Start `topo`, send one request of `prompt_tokens`, stop it; raises if it cannot start."""
    deployment = Deployment(topo, topology_path, log_dir, metrics_base_port=topo.http_port + 1400)
    endpoints = deployment.start()
    try:
        named = dict(zip(endpoints.metrics_processes, endpoints.metrics, strict=True))
        prompts = PromptFactory(seed=3)
        spec = RequestSpec(0, prompts.unique(0, prompts.text_tokens(prompt_tokens)),
                           prompt_tokens, output_tokens)  # fmt: skip
        before = probe.snapshot(named)
        record = asyncio.run(_send(endpoints.http, spec))
        after = probe.snapshot(named)
    finally:
        deployment.stop()
    return OneRequest(record, topo.threshold_tokens, probe.changes(before, after))


async def _send(url: str, spec: RequestSpec) -> RequestRecord:
    async with httpx.AsyncClient() as client:
        return await send_request(client, url, spec, RequestRecord(0, 0.0), timeout_s=120.0)
