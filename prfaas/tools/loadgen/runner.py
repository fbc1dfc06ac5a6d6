"""The open-loop driver: send every request at its scheduled time, whatever is still running.

Requests are launched on schedule as independent tasks; completions never delay later sends.
`max_concurrency` is a safety cap only: when that many requests are in flight a send waits for a
slot, and the delay shows up as send lag (`Summary.max_send_lag_s`). Each request has its own
timeout. Prometheus endpoints, when given, are sampled for KV egress while the run lasts.

Ctrl-C: `asyncio.run` cancels the run on the first SIGINT; the run then cancels the requests still
in flight, sends nothing more and returns what finished, with `config["interrupted"]` saying how
many were cancelled and how many never sent (a second Ctrl-C ends the process at once).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import httpx

from prfaas.tools.loadgen.client import RequestRecord, send_request
from prfaas.tools.loadgen.progress import Progress
from prfaas.tools.loadgen.results import Results
from prfaas.tools.loadgen.scrape import (
    MetricsSampler,
    diff_counts,
    fetch,
    prefix_move_counts,
    routing_decisions,
)
from prfaas.tools.loadgen.stage_stats import Histograms, stage_histograms, stage_summary
from prfaas.tools.loadgen.workloads import Workload


@dataclass(frozen=True)
class LoadConfig:
    max_concurrency: int = 256
    timeout_s: float = 600.0
    model: str | None = None
    metrics_urls: tuple[str, ...] = ()
    """Prometheus endpoints; the first is taken as the router's for routing decisions."""
    egress_urls: tuple[str, ...] | None = None
    """Endpoints whose KV bytes sent count as egress (the PrfaaS workers', so that transfers
    inside the PD datacenter are left out); None: every endpoint in `metrics_urls`."""
    scrape_interval_s: float = 1.0
    progress: bool = True
    label: str = ""
    clock_origin: float | None = None
    """perf_counter time that send times and record start times are relative to (None: when
    sending begins). A caller that times other events on the same axis (the chaos injector) pins
    it, so a request and a fault line up to the millisecond, whatever set-up precedes sending."""


async def run_load_async(
    url: str, workload: Workload, schedule: list[float], config: LoadConfig | None = None
) -> Results:
    config = config or LoadConfig()
    if len(schedule) != len(workload.requests):
        raise ValueError("one send time per request is needed")
    order = sorted(range(len(schedule)), key=lambda i: schedule[i])
    records = [RequestRecord(workload.requests[i].index, schedule[i]) for i in range(len(schedule))]
    progress = Progress(len(records), config.label, enabled=config.progress)
    slots = asyncio.Semaphore(config.max_concurrency)
    egress = config.metrics_urls if config.egress_urls is None else config.egress_urls
    sampler = MetricsSampler(list(egress), config.scrape_interval_s)
    routing_before = await _routing(config)
    stages_before = await _stages(config)
    moves_before = await _prefix_moves(config)
    limits = httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=config.timeout_s) as client:

        async def one(i: int, run_start: float) -> None:
            try:
                progress.update(sent=1)
                await send_request(
                    client,
                    url,
                    workload.requests[i],
                    records[i],
                    model=config.model,
                    timeout_s=config.timeout_s,
                    run_start=run_start,
                )
            finally:
                slots.release()
                progress.update(done=1, failed=0 if records[i].ok else 1)

        stop = asyncio.Event()
        run_start = time.perf_counter() if config.clock_origin is None else config.clock_origin
        scraping = asyncio.create_task(sampler.run(run_start, stop)) if sampler.urls else None
        tasks: dict[int, asyncio.Task[None]] = {}
        interrupted = False
        try:
            for i in order:
                delay = schedule[i] - (time.perf_counter() - run_start)
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                tasks[i] = asyncio.create_task(one(i, run_start))
            await asyncio.gather(*tasks.values())
        except asyncio.CancelledError:
            interrupted = True
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # handled: the scrapes below still run
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        stop.set()
        if scraping is not None:
            await scraping
    progress.close()
    routing = diff_counts(await _routing(config), routing_before) if config.metrics_urls else {}
    stages = stage_summary(await _stages(config), stages_before)
    moves = diff_counts(await _prefix_moves(config), moves_before)
    run_config = {
        "url": url,
        "workload": {"name": workload.name, "requests": len(workload.requests), **workload.params},
        "load": asdict(config),
    }
    if interrupted:
        finished = {i for i, task in tasks.items() if not task.cancelled()}
        run_config["interrupted"] = {
            "finished": len(finished),
            "cancelled_in_flight": len(tasks) - len(finished),
            "never_sent": len(records) - len(tasks),
        }
        records = [records[i] for i in sorted(finished)]
    return Results(run_config, records, sampler.samples, routing, stages, moves)


async def _routing(config: LoadConfig) -> dict[str, float]:
    return await routing_decisions(config.metrics_urls[0]) if config.metrics_urls else {}


async def _stages(config: LoadConfig) -> Histograms:
    """The router's stage histograms now ({} without a router metrics URL or an answer)."""
    if not config.metrics_urls:
        return {}
    async with httpx.AsyncClient() as client:
        text = await fetch(client, config.metrics_urls[0])
    return stage_histograms(text) if text else {}


async def _prefix_moves(config: LoadConfig) -> dict[str, float]:
    """The router's prefix-move counters now ({} without a router metrics URL or an answer)."""
    if not config.metrics_urls:
        return {}
    async with httpx.AsyncClient() as client:
        text = await fetch(client, config.metrics_urls[0])
    return prefix_move_counts(text) if text else {}


def run_load(
    url: str, workload: Workload, schedule: list[float], config: LoadConfig | None = None
) -> Results:
    """Run one open-loop load against `url` (an OpenAI base URL ending in /v1)."""
    return asyncio.run(run_load_async(url, workload, schedule, config))


def warm_up(url: str, num_requests: int, config: LoadConfig | None = None) -> int:
    """Send `num_requests` short requests one at a time (not measured; first-call costs such as
    lazy initialization are paid here). Their prompts share nothing with any workload's. Returns
    how many succeeded."""
    from prfaas.tools.loadgen.prompts import PromptFactory
    from prfaas.tools.loadgen.workloads import RequestSpec

    if num_requests <= 0:
        return 0
    prompts = PromptFactory(seed=2**31 - 1)  # a stream no workload seed uses in practice
    specs = [RequestSpec(i, prompts.unique(i, 32), 33, 4) for i in range(num_requests)]
    base = config or LoadConfig()
    quiet = LoadConfig(1, base.timeout_s, base.model, progress=False)
    results = run_load(url, Workload("warmup", specs, {}), [0.0] * num_requests, quiet)
    return sum(r.ok for r in results.records)
