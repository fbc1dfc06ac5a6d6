"""Bandwidth fluctuation (issue 7 item 5): the prfaas deployment under steady load while the link
rate is cut to a fraction for a while in the middle.

A sampler thread reads, once per `interval_s`, the router's `prfaas_routing_threshold_tokens`
gauge, `prfaas_routing_decisions_total` counters and `prfaas_link_utilization_ratio` gauge (the
short-term controller's egress signal, of the configured capacity), and from the PrfaaS workers
their KV bytes sent, requests waiting (the queue-depth signal) and TCP retransmits (the loss
signal; loss ≈ retransmits / (bytes sent / 1448-byte segments)); timers re-shape the link at
each step of a schedule of (seconds, factor of the configured rate) — by default a cut to
`cut_fraction` at `cut_at_s`, restored `cut_for_s` later; `parse_schedule` reads e.g.
"60:0.25,360:1" (a 4x drop held 5 minutes) or "0:2" (a link twice as fast as configured from the
start). The phases ("before" the first step, "during" until the rate is back at the configured
one, "after", and "recovered" from 30 s after that) are by send time. Output: the time series,
each request's send time and TTFT, whether any request failed, and how long after the first
step the threshold first rose.
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
from prfaas.tools.experiment.threshold_trajectory import first_raise_after
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


RECOVERED_AFTER_S = 30.0
"""The "recovered" phase starts this long after the link is back at its configured rate."""


def parse_schedule(text: str) -> list[tuple[float, float]]:
    """ "60:0.1,120:1" -> [(60.0, 0.1), (120.0, 1.0)]: at each time (s), the link becomes that
    factor of the configured rate."""
    steps = []
    for part in text.split(","):
        at, _, factor = part.strip().partition(":")
        if not factor:
            raise ValueError(f"schedule step {part!r} is not SECONDS:FACTOR")
        steps.append((float(at), float(factor)))
    if not steps or any(f <= 0 for _, f in steps):
        raise ValueError(f"schedule {text!r}: factors must be > 0")
    return sorted(steps)


def cut_window(steps: list[tuple[float, float]], duration_s: float) -> tuple[float, float]:
    """(start, length) of the changed stretch: from the first step to the first later step back
    at the configured rate (the end of the arrivals when there is none)."""
    start = steps[0][0]
    end = next((at for at, f in steps if at > start and f == 1.0), duration_s)
    return start, end - start


def _event_name(factor: float) -> str:
    return "restore" if factor == 1.0 else "cut" if factor < 1.0 else f"x{factor:g}"


def run_fluctuation(
    running: Running, rate: float, duration_s: float, scale: Scale, *, cut_at_s: float,
    cut_for_s: float, cut_fraction: float = 0.25, seed: int = 777,
    steps: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    wl, schedule = workload_for(rate, duration_s, scale, seed)
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()

    def shape(gbps: float, what: str) -> None:
        ok = running.set_link_rate(gbps)
        events.append({"t_s": time.monotonic() - t0, "event": what, "gbps": gbps, "ok": ok})

    if steps is None:
        steps = [(cut_at_s, cut_fraction), (cut_at_s + cut_for_s, 1.0)]
    cut_at_s, cut_for_s = cut_window(steps, duration_s)
    low = scale.link_gbps * min(f for _, f in steps)
    timers = [threading.Timer(at, shape, (scale.link_gbps * f, _event_name(f))) for at, f in steps]
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
        if not events or events[-1]["gbps"] != scale.link_gbps:
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
        "schedule": [{"t_s": at, "factor": f} for at, f in steps],
        "first_raise_after_cut_s": first_raise_after(sampler.samples, cut_at_s),
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
    """TTFT mean and failures per phase (by send time): before, during and after the changed
    stretch, and recovered (from RECOVERED_AFTER_S after it)."""
    out: dict[str, Any] = {}
    end = cut_at + cut_for
    bounds = {"before": (0.0, cut_at), "during": (cut_at, end), "after": (end, float("inf")),
              "recovered": (end + RECOVERED_AFTER_S, float("inf"))}  # fmt: skip
    for name, (a, b) in bounds.items():
        sent = [r for r in requests if a <= r["send_s"] < b]
        ttft = [r["ttft_s"] for r in sent if r["ttft_s"] is not None]
        out[name] = {
            "requests": len(ttft),
            "failed": sum(1 for r in sent if not r["ok"]),
            "ttft_mean_s": sum(ttft) / len(ttft) if ttft else None,
        }
    before, recovered = out["before"]["ttft_mean_s"], out["recovered"]["ttft_mean_s"]
    out["recovery_ratio"] = recovered / before if before and recovered is not None else None
    return out
