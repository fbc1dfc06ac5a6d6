"""One chaos (or soak) run: start the deployment, warm it up, run the workload while the injector
applies the schedule and the sampler watches every process, then ask the workers for leaks, judge,
and write `result.json` and `summary.txt` into the output folder.

Lifecycle: the deployment is started supervised, as `prfaas up` starts it (dead children restarted
with backoff, relays with their control ports), first and stopped last whatever happens; the workload, the injector and the sampler share one clock
(t = 0 when the workload starts); faults still active when the workload ends finish before the
leak check (a stopped process is continued, a killed one revived).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prfaas.launcher.deployment import Deployment
from prfaas.launcher.restart_policy import RestartPolicy
from prfaas.tools.chaos.actuator import DeploymentActuator
from prfaas.tools.chaos.injector import Event, Injector
from prfaas.tools.chaos.leaks import leak_reports
from prfaas.tools.chaos.resources import ResourceSampler
from prfaas.tools.chaos.schedule import Schedule
from prfaas.tools.chaos.summary import summary_text
from prfaas.tools.chaos.verdict import judge
from prfaas.tools.chaos.workload import build_workload
from prfaas.tools.loadgen.runner import LoadConfig, run_load_async, warm_up
from prfaas.topology import Topology


@dataclass(frozen=True)
class RunOptions:
    sample_interval_s: float = 5.0
    # RSS/fd slopes are fitted over samples after this many seconds (allocator and caches warm).
    warmup_s: float = 60.0
    warmup_requests: int = 4
    leak_timeout_s: float = 30.0
    # Soak: judge memory and descriptors too (every process's RSS and fd slope flat).
    soak: bool = False


def _live_pids(deployment: Deployment) -> dict[str, int]:
    return {c.spec.name: c.pid for c in deployment.supervisor.children if c.alive}


def _run_checks(
    deployment: Deployment, events: list[Event], resources: list[dict[str, Any]], soak: bool
) -> dict[str, dict[str, Any]]:
    """Checks only the run itself can make (the verdict's come from records and leak reports)."""
    supervisor = deployment.supervisor
    failed = [e.to_json() for e in events if not e.ok]
    checks: dict[str, dict[str, Any]] = {
        # The supervisor ends a deployment only on a crash loop or a clean router exit, neither
        # of which a fault schedule should cause.
        "deployment_up": {
            "passed": not supervisor.ended.is_set(),
            "end_reason": supervisor.end_reason,
            "restarts": supervisor.summary(),
        },
        # A fault that could not be applied would make every other check pass for nothing.
        "faults_applied": {"passed": not failed, "failed": failed},
    }
    if soak:
        unflat = [
            f"{s['name']} ({key})"
            for s in resources
            for key in ("rss_slope", "fd_slope")
            if s[key] is not None and not s[key]["flat"]
        ]
        fitted = [s for s in resources if s["rss_slope"] is not None]
        checks["resources_flat"] = {"passed": bool(fitted) and not unflat, "unflat": unflat}
    return checks


async def _run(deployment: Deployment, schedule: Schedule, options: RunOptions) -> dict[str, Any]:
    url = deployment.endpoints().http
    workload, arrivals = build_workload(schedule.workload, schedule.duration_s)
    injector = Injector(schedule, DeploymentActuator(deployment))
    sampler = ResourceSampler(lambda: _live_pids(deployment), options.sample_interval_s)
    stop = asyncio.Event()
    t0 = time.perf_counter()
    # One time axis for requests, faults and samples (the load's set-up before its first send
    # used to shift records ~1 s early, so failures at a fault's start looked unexplained).
    config = LoadConfig(timeout_s=schedule.workload.timeout_s, progress=False, label="chaos",
                        clock_origin=t0)  # fmt: skip
    sampling = asyncio.create_task(sampler.run(t0, stop))
    injecting = asyncio.create_task(injector.run(t0))
    try:
        results = await run_load_async(url, workload, arrivals, config)
        events = await injecting
        credentials = deployment.secrets.credentials()
        leaks = await leak_reports(deployment.topo, credentials, options.leak_timeout_s)
    finally:
        injecting.cancel()
        stop.set()
        await sampling
    verdict = judge(results.records, schedule, leaks)
    resources = sampler.report(options.warmup_s)
    verdict["checks"].update(_run_checks(deployment, events, resources, options.soak))
    verdict["passed"] = all(c["passed"] for c in verdict["checks"].values())
    return {
        "schedule": schedule.to_json(),
        "options": asdict(options),
        "events": [e.to_json() for e in events],
        "verdict": verdict,
        "resources": resources,
        "load_summary": asdict(results.summary),
        "records": [r.to_json() for r in results.records],
    }


def run_chaos(
    topo: Topology, source: Path, schedule: Schedule, out_dir: Path, options: RunOptions
) -> dict[str, Any]:
    """Run `schedule` against a fresh deployment of `topo`; writes and returns the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schedule.save(out_dir / "schedule.json")
    deployment = Deployment(topo, source, out_dir / "logs")
    deployment.start(supervise=True, restart_policy=RestartPolicy())
    try:
        url = deployment.endpoints().http
        warm_up(url, options.warmup_requests, LoadConfig(timeout_s=schedule.workload.timeout_s))
        result = asyncio.run(_run(deployment, schedule, options))
    finally:
        deployment.stop()
    (out_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "summary.txt").write_text(summary_text(result))
    return result
