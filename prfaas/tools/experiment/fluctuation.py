"""Bandwidth fluctuation (issue 7 item 5): the prfaas deployment under steady load while the link
rate is cut to a fraction for a while in the middle.

A sampler thread reads, once per `interval_s`, the router's `prfaas_routing_threshold_tokens`
gauge, `prfaas_routing_decisions_total` counters and `prfaas_link_utilization_ratio` gauge (the
short-term controller's egress signal, of the configured capacity), and from the PrfaaS workers
their KV bytes sent, requests waiting (the queue-depth signal) and TCP retransmits (the loss
signal; loss ≈ retransmits / (bytes sent / 1448-byte segments)); a timer
re-shapes the link at `cut_at_s` and restores it `cut_for_s` later. Output: the time series, each
request's send time and TTFT, and whether any request failed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

import httpx

from prfaas.tools.experiment.deploy import Running
from prfaas.tools.experiment.scale import Scale
from prfaas.tools.experiment.sweep import Criterion, analyze, workload_for
from prfaas.tools.loadgen import LoadConfig, run_load
from prfaas.tools.loadgen.scrape import KV_SENT, routing_counts, sample_values

THRESHOLD = "prfaas_routing_threshold_tokens"
UTILIZATION = "prfaas_link_utilization_ratio"
CAPACITY = "prfaas_link_capacity_bytes_per_second"
WAITING = "prfaas_num_requests_waiting"
RETRANSMITS = "prfaas_link_retransmits_total"


def _get(client: httpx.Client, url: str) -> str | None:
    try:
        reply = client.get(url, timeout=2.0)
        return reply.text if reply.status_code == 200 else None
    except httpx.HTTPError:
        return None


class Sampler(threading.Thread):
    def __init__(self, running: Running, t0: float, interval_s: float = 1.0) -> None:
        super().__init__(name="fluct-sampler", daemon=True)
        self.running, self.t0, self.interval_s = running, t0, interval_s
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client() as client:
            while not self.stop_event.is_set():
                self.samples.append(self.sample(client))
                self.stop_event.wait(self.interval_s)

    def sample(self, client: httpx.Client) -> dict[str, Any]:
        t = time.monotonic() - self.t0
        text = _get(client, self.running.router_metrics) or ""
        gauge = sample_values(text, THRESHOLD) if text else []
        routing = routing_counts(text) if text else {}
        util = sample_values(text, UTILIZATION) if text else []
        capacity = sample_values(text, CAPACITY) if text else []
        sent = waiting = retrans = 0.0
        for url in self.running.prfaas_metrics:
            body = _get(client, url)
            if not body:
                continue
            sent += sum(v for _, v in sample_values(body, KV_SENT))
            waiting += sum(v for _, v in sample_values(body, WAITING))
            retrans += sum(v for _, v in sample_values(body, RETRANSMITS))
        n = max(1, len(self.running.prfaas_metrics))
        return {
            "t_s": t,
            "threshold_tokens": max((v for _, v in gauge), default=None),
            "offloaded": sum(
                v for k, v in routing.items() if k.split("/")[1:2] in (["offload"], ["prfaas"])
            ),
            "decisions": sum(routing.values()),
            "egress_sent_bytes": sent,
            "utilization": max((v for _, v in util), default=None),
            # The link capacity the short-term controller used (measured; configured until then).
            "capacity_bytes_per_s": max((v for _, v in capacity), default=None),
            "prfaas_waiting_mean": waiting / n,
            "retransmits": retrans,
        }


def run_fluctuation(
    running: Running, rate: float, duration_s: float, scale: Scale, *, cut_at_s: float,
    cut_for_s: float, cut_fraction: float = 0.25, seed: int = 777,
) -> dict[str, Any]:  # fmt: skip
    wl, schedule = workload_for(rate, duration_s, scale, seed)
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()

    def shape(gbps: float, what: str) -> None:
        ok = running.set_link_rate(gbps)
        events.append({"t_s": time.monotonic() - t0, "event": what, "gbps": gbps, "ok": ok})

    low = scale.link_gbps * cut_fraction
    timers = [
        threading.Timer(cut_at_s, shape, (low, "cut")),
        threading.Timer(cut_at_s + cut_for_s, shape, (scale.link_gbps, "restore")),
    ]
    sampler = Sampler(running, t0)
    sampler.start()
    for timer in timers:
        timer.start()
    try:
        results = run_load(running.http, wl, schedule, LoadConfig(
            timeout_s=600.0, metrics_urls=(running.router_metrics, *running.worker_metrics),
            egress_urls=tuple(running.prfaas_metrics), progress=False,
        ))  # fmt: skip
    finally:
        for timer in timers:
            timer.cancel()
        if not any(e["event"] == "restore" for e in events):
            shape(scale.link_gbps, "restore")
        sampler.stop_event.set()
        sampler.join(5)
    point = analyze(results, rate, scale, Criterion())
    requests = [
        {"send_s": r.start_s, "ttft_s": r.ttft_s, "ok": r.ok, "input_tokens": r.input_tokens}
        for r in results.records
    ]
    phases = _phases(requests, cut_at_s, cut_for_s)
    return {
        "rate_rps": rate,
        "duration_s": duration_s,
        "cut_at_s": cut_at_s,
        "cut_for_s": cut_for_s,
        "link_gbps": scale.link_gbps,
        "cut_gbps": low,
        "events": events,
        "samples": sampler.samples,
        "requests": requests,
        "failed": point["failed"],
        "summary": {k: v for k, v in point.items() if k != "routing"},
        "phases": phases,
        "stages": results.stages,
        "summary_full": asdict(results.summary),
    }


def _phases(requests: list[dict[str, Any]], cut_at: float, cut_for: float) -> dict[str, Any]:
    """TTFT mean and offloads per phase: before, during and after the cut (by send time)."""
    out: dict[str, Any] = {}
    bounds = {"before": (0.0, cut_at), "during": (cut_at, cut_at + cut_for),
              "after": (cut_at + cut_for, float("inf"))}  # fmt: skip
    for name, (a, b) in bounds.items():
        ttft = [r["ttft_s"] for r in requests if a <= r["send_s"] < b and r["ttft_s"] is not None]
        out[name] = {"requests": len(ttft), "ttft_mean_s": sum(ttft) / len(ttft) if ttft else None}
    return out
