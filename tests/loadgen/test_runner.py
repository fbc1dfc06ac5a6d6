"""The generator against the router's real HTTP app (fake backend) on a local port."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack
from pathlib import Path

from prfaas.router.generation_backend import Overloaded
from prfaas.tools.loadgen.compare import Target, compare_policies, write_comparison
from prfaas.tools.loadgen.run_report import write_results
from prfaas.tools.loadgen.runner import LoadConfig, run_load_async
from prfaas.tools.loadgen.workloads import RequestSpec, Scaling, Workload, lognormal_workload
from tests.loadgen.conftest import KV_BYTES_PER_PROMPT_TOKEN, CountingBackend, start_counting
from tests.router.conftest import Served

QUIET = LoadConfig(progress=False, timeout_s=20)


def small_workload(n: int, output_tokens: int = 6) -> Workload:
    scaling = Scaling(length_scale=0.004, output_tokens=output_tokens)
    return lognormal_workload(n, scaling=scaling, seed=5)


async def test_open_loop_sends_on_schedule_while_requests_run(server: Served) -> None:
    # Each request takes about 20 tokens x 10 ms = 0.2 s; sends are 20 ms apart.
    workload = small_workload(10, output_tokens=20)
    schedule = [0.02 * i for i in range(10)]
    results = await run_load_async(f"{server.url}/v1", workload, schedule, QUIET)
    records = results.records
    assert all(r.ok for r in records)
    # Closed-loop sending would lag ~0.2 s more per request (1.8 s by the last); the bound leaves
    # room for a loaded machine's scheduling delay without accepting that.
    assert max(r.start_s - r.scheduled_s for r in records) < 0.5
    first_end = records[0].start_s + (records[0].e2e_s or 0)
    assert records[-1].start_s < first_end  # sent before the first completed: open loop
    capped = await run_load_async(
        f"{server.url}/v1", workload, schedule, LoadConfig(max_concurrency=1, progress=False)
    )
    assert capped.summary.max_send_lag_s > 1.0  # the cap serializes: lag shows it


async def test_end_to_end_files_and_token_counts(server: Served, tmp_path: Path) -> None:
    workload = small_workload(12)
    schedule = [0.01 * i for i in range(12)]
    config = LoadConfig(
        progress=False, metrics_urls=(f"{server.url}/metrics",), scrape_interval_s=0.05
    )
    results = await run_load_async(f"{server.url}/v1", workload, schedule, config)
    for spec, rec in zip(workload.requests, results.records, strict=True):
        assert rec.ok and rec.status == 200
        assert rec.prompt_tokens == spec.input_tokens  # BOS accounted for
        assert rec.completion_tokens == 6 and rec.cached_tokens == 3
        assert rec.ttft_s is not None and len(rec.itl_s) == 5
    sent = [list(r.prompt_token_ids) for r in server.backend.requests]
    assert sorted(len(p) for p in sent) == sorted(s.input_tokens for s in workload.requests)
    assert all(
        r.sampling.ignore_eos and r.sampling.temperature == 0 for r in server.backend.requests
    )
    s = results.summary
    assert s.egress_bytes == KV_BYTES_PER_PROMPT_TOKEN * sum(
        r.input_tokens for r in workload.requests
    )
    assert results.routing == {"prfaas/offload/long": 12.0}
    paths = write_results(results, tmp_path, "fake")
    data = json.loads(paths["json"].read_text())
    assert len(data["requests"]) == 12 and data["summary"]["succeeded"] == 12
    assert "| fake | 12/12 |" in paths["markdown"].read_text()
    for key in ("ttft_cdf", "timeline"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_http_errors_are_recorded(tmp_path: Path) -> None:
    with ExitStack() as stack:
        served = start_counting(stack, CountingBackend(fail_admission=Overloaded(1.0)))
        workload = Workload("w", [RequestSpec(i, "hello", 6, 3) for i in range(4)], {})
        results = await run_load_async(f"{served.url}/v1", workload, [0.0] * 4, QUIET)
        unreachable = await run_load_async("http://127.0.0.1:9/v1", workload, [0.0] * 4, QUIET)
    assert results.summary.errors == {"429": 4} and results.summary.succeeded == 0
    assert all("429" in (r.error or "") for r in results.records)
    assert unreachable.summary.errors == {"0": 4}


class FakeDeployment:
    """Stands in for `prfaas.launcher.Deployment`: one in-process server per policy."""

    def __init__(self, policy: str, stack: ExitStack, started: list[str]) -> None:
        self.policy, self.stack, self.started = policy, stack, started
        self.inner = ExitStack()

    def start(self) -> Target:
        backend = CountingBackend(policy=self.policy, token_delay_s=0.002)
        served = start_counting(self.inner, backend)
        self.started.append(self.policy)
        self.backend = backend
        metrics = [f"{served.url}/metrics"]
        egress = [] if self.policy == "homogeneous-pd" else metrics  # no PrfaaS workers
        return Target(f"{served.url}/v1", metrics, egress)

    def stop(self) -> None:
        self.started.append(f"stop {self.policy}")
        self.inner.close()


def test_compare_runs_each_policy_on_the_same_workload(tmp_path: Path) -> None:
    started: list[str] = []
    deployments: list[FakeDeployment] = []

    def factory(policy: str, log_dir: Path) -> FakeDeployment:
        deployments.append(FakeDeployment(policy, ExitStack(), started))
        return deployments[-1]

    workload = small_workload(6)
    comparison = compare_policies(
        workload, [0.01 * i for i in range(6)], config=QUIET, warmup=2, factory=factory
    )
    assert started == [
        "prfaas",
        "stop prfaas",
        "homogeneous-pd",
        "stop homogeneous-pd",
        "naive-hetero",
        "stop naive-hetero",
    ]
    prompts = [sorted(r.prompt_token_ids for r in d.backend.requests) for d in deployments]
    assert prompts[0] == prompts[1] == prompts[2] and len(prompts[0]) == 8  # 2 warm-up + 6
    for name, results in comparison.runs.items():
        assert results.routing == {f"{name}/offload/long": 6.0}  # warm-up not counted
        assert results.summary.succeeded == 6
        assert (results.summary.egress_bytes is None) == (name == "homogeneous-pd")
    paths = write_comparison(comparison, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert set(data["summaries"]) == {"prfaas", "homogeneous-pd", "naive-hetero"}
    md = paths["markdown"].read_text()
    assert "| naive-hetero | offload | long | 6 |" in md
    assert paths["ttft_cdf"].read_bytes()[:4] == b"\x89PNG"


async def test_a_pinned_clock_origin_puts_records_on_the_callers_axis(server: Served) -> None:
    """The chaos injector and the load share one time axis: with `clock_origin` pinned, send
    times are relative to it, so set-up time before the first send shifts nothing."""
    import time
    from dataclasses import replace

    origin = time.perf_counter()
    await asyncio.sleep(0.3)  # set-up that happens before sending starts
    workload = small_workload(3, output_tokens=2)
    results = await run_load_async(
        f"{server.url}/v1", workload, [0.5, 0.6, 0.7], replace(QUIET, clock_origin=origin)
    )
    starts = [r.start_s for r in results.records]
    assert all(r.ok for r in results.records)
    assert all(s >= 0.5 for s in starts) and max(starts) < 1.2
