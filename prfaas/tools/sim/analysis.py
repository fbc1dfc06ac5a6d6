"""Simulated requests as the loadgen's `Results`, so `prfaas.tools.experiment.sweep.analyze` computes
every number (throughput estimator, TTFT, TPOT, completion ratio, offload fraction) exactly as it
does for a measured run; the stages a simulated request has a twin of in the router's stage
histogram (`prfaas.metrics.stages`); plus egress over one-second windows (mean and P99) for
projections."""

from __future__ import annotations

from typing import Any

import numpy as np

from prfaas.tools.loadgen import Results
from prfaas.tools.loadgen.client import RequestRecord
from prfaas.tools.loadgen.scrape import EgressSample
from prfaas.tools.sim.simulation import SimResult


def _record(req: Any, record_itl: bool, client_hop_s: float = 0.0) -> RequestRecord:
    rec = RequestRecord(req.index, req.arrival_s, req.arrival_s, input_tokens=req.input_tokens,
                        output_tokens=req.output_tokens, prompt_tokens=req.input_tokens)  # fmt: skip
    if req.error is not None or req.finish_s is None:
        rec.status = 429 if req.error else 0
        rec.error = req.error or "did not finish in the simulated time"
        return rec
    rec.status = 200
    rec.ttft_s = req.first_token_s - req.arrival_s + client_hop_s
    rec.e2e_s = req.finish_s - req.arrival_s + client_hop_s
    rec.completion_tokens = req.output_tokens
    rec.cached_tokens = req.cached_tokens
    if record_itl and req.output_tokens > 1:
        first = req.decode_join_s - req.first_token_s + req.step_s
        rec.itl_s = [first] + [req.step_s] * (req.output_tokens - 2)
    return rec


def stages(requests: list[Any]) -> dict[str, dict[str, float]]:
    """count, mean_s, p90_s of the stages of the served requests that a simulated request has,
    named as the router's (`prfaas.metrics.stages`), at the router (no client hop):
      prefill_queue    arrival -> prefill start (the queue: the prefill starts with the decode
                       admission, which overlaps it and is not a stage here; the
                       router's stage starts at the worker, so it reads a little less)
      prefill_compute  prefill start -> end
      first_token      arrival -> first token (one attempt: the simulator does not retry)
      ttft             the same
      decode           first token -> finished
      total            arrival -> finished
    Exact quantiles of the simulated times, where the router's are interpolated in histogram
    buckets. The simulator has no decode_admit or kv_transfer_exposed of its own."""
    done = [r for r in requests if r.error is None and r.finish_s is not None]
    spans: dict[str, list[float]] = {
        "prefill_queue": [r.prefill_start_s - r.arrival_s for r in done
                          if r.prefill_start_s is not None],
        "prefill_compute": [r.prefill_end_s - r.prefill_start_s for r in done
                            if r.prefill_start_s is not None and r.prefill_end_s is not None],
        "first_token": [r.first_token_s - r.arrival_s for r in done],
        "decode": [r.finish_s - r.first_token_s for r in done],
        "total": [r.finish_s - r.arrival_s for r in done],
    }  # fmt: skip
    spans["ttft"] = spans["first_token"]
    order = ("prefill_queue", "prefill_compute", "first_token", "ttft", "decode", "total")
    return {
        name: {"count": float(len(spans[name])), "mean_s": float(np.mean(spans[name])),
               "p90_s": float(np.percentile(spans[name], 90))}
        for name in order if spans[name]
    }  # fmt: skip


def to_results(result: SimResult, label: str = "sim") -> Results:
    itl = result.config.record_itl
    records = [_record(r, itl, result.config.client_hop_s) for r in result.requests]
    egress = [EgressSample(s["t_s"], s["egress_sent_bytes"]) for s in result.timeline]
    config = {"label": label, "simulated": True, **result.stats}
    return Results(config, records, egress, dict(result.routing), stages(result.requests))


def egress_windows(result: SimResult) -> dict[str, float | None]:
    """PrfaaS egress per one-second tick while requests were in flight: mean, P99, max (B/s)."""
    rates = [s["egress_bytes_per_s"] for s in result.timeline if s["inflight"] > 0]
    if not rates:
        return {"mean": None, "p99": None, "max": None}
    arr = np.asarray(rates)
    return {"mean": float(arr.mean()), "p99": float(np.percentile(arr, 99)),
            "max": float(arr.max())}  # fmt: skip
