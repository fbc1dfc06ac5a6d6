"""`prfaas bench router-replicas`: what one router process sustains, what two replicas add, and how
far replicas over-admit a decode worker (issue 17 item 3).

Throughput. Instant `mixed` workers (router_overhead.InstantWorker, one process each) answer every
Generate at once. Each router replica is its own process: a registry of those workers (heartbeats
and cache-event streams, as `prfaas router` has), a `Dispatcher`, and `--concurrency` closed-loop
callers of `Dispatcher.generate` (prefix match, policy, placement accounting, timeline, the
Generate call, relay). It reports requests finished in the measured window, latency p50/p99 and
its CPU seconds per request. The HTTP front end is not in the loop: this is the routing path a
replica scales by. 1 replica, then 2 at once, in the same run; the ratio is 2-replica total over
1-replica requests per second. The instant workers' CPU over the same window is read from /proc,
so the CPU per request of the whole path (replicas + workers) and the cores it used are reported:
where they share a small machine, two replicas cannot go past what the cores left give.

Over-admission. A PD-P worker with an instant prefill and a PD-D worker with `--max-num-seqs`
seats that decodes each request `--hold-ms` and reports its running count in `GetLoad` (as a real
worker does, polled every 0.5 s), and refuses a decode-only admission as a real PD worker does
(`--decode-admission-slack`, worker/seat_line.py; its transfers are instant, so the line is its
running count; negative: never refuse, the worker before issue 17's refusal). The same
closed-loop load (2 x max_num_seqs callers, a refused caller retries after 5 ms) goes through one
router, then is split over two routers with separate registries (two processes' views, on one
loop here: admission does not depend on CPU). Measured at the worker: the most requests it held
at once against max_num_seqs, its running count sampled every 10 ms (mean over max_num_seqs and
the share of samples above it), and the share of its admissions that found every seat taken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2
from prfaas.roles import Role
from prfaas.router.control import ShortTermController
from prfaas.router.dispatcher import DispatchConfig, Dispatcher
from prfaas.router.generation_backend import GenerationRequest, Overloaded
from prfaas.router.policy import RoutingConfig
from prfaas.router.prefix_index import PrefixIndex
from prfaas.router.registry import WorkerHandle, WorkerRegistry
from prfaas.sampling import SamplingParams
from prfaas.tools.benchmarks.router_overhead import InstantWorker, serve_worker
from prfaas.worker.seat_line import SeatLine

WARMUP_S = 1.0
OPEN_GRACE_S = 2.0
"""How long an instant prefill waits for the decode worker to register its transfer."""


class Handoffs:
    """First tokens from `PrefillInstantWorker` to `DecodeSeatWorker`, by transfer id (one event
    loop). The handshake starts the prefill with the admission (issue 12), so a prefill may come
    before the decode worker registered its transfer: it waits up to `OPEN_GRACE_S`, as a real
    receiver holds an early OPEN (`kv_open_grace_s`). Without the wait most instant prefills failed
    (`unknown transfer`, retried), and the over-admission figures measured those retries."""

    def __init__(self) -> None:
        self._first: dict[str, asyncio.Future[int]] = {}
        self._early: dict[str, asyncio.Future[None]] = {}

    def register(self, transfer_id: str) -> asyncio.Future[int]:
        first = asyncio.get_running_loop().create_future()
        self._first[transfer_id] = first
        early = self._early.pop(transfer_id, None)
        if early is not None and not early.done():
            early.set_result(None)
        return first

    def forget(self, transfer_id: str) -> None:
        self._first.pop(transfer_id, None)

    async def deliver(self, transfer_id: str, token: int) -> bool:
        """Hand `token` to the registered transfer (False: never registered within the grace)."""
        if transfer_id not in self._first:
            early = self._early.setdefault(transfer_id, asyncio.get_running_loop().create_future())
            try:
                await asyncio.wait_for(early, OPEN_GRACE_S)
            except TimeoutError:
                pass
            finally:
                self._early.pop(transfer_id, None)
        first = self._first.pop(transfer_id, None)
        if first is None or first.done():
            return False
        first.set_result(token)
        return True


class DecodeSeatWorker(InstantWorker):
    """A PD-D worker: a decode-only Generate waits for its KV (the first token from
    `PrefillInstantWorker`, through `handoffs`), then holds a seat `hold_s` and reports in
    `GetLoad` how many it holds, as a real worker's running batch; past its seat line it refuses
    the admission (`overloaded`), as a real PD worker."""

    def __init__(self, handoffs: Handoffs, max_num_seqs: int, hold_s: float,
                 slack: int = 0) -> None:  # fmt: skip
        self.handoffs, self.max_num_seqs, self.hold_s = handoffs, max_num_seqs, hold_s
        self.seats = SeatLine(max_num_seqs, slack)
        self.refused = 0
        self.running = 0
        self.peak = 0
        self.admissions = 0
        self.admitted_over = 0
        """Requests whose KV arrived with all `max_num_seqs` seats taken (waiting for a seat)."""

    async def Generate(self, request, context):  # noqa: N802, ANN001, ANN201
        refusal = self.seats.refusal(self.running, 0)
        if refusal is not None:
            self.refused += 1
            err = worker_pb2.WorkerError(code="overloaded", message=refusal)
            yield worker_pb2.GenerateEvent(error=err)
            return
        tid = request.kv_source.transfer_id
        first = self.handoffs.register(tid)
        try:
            yield worker_pb2.GenerateEvent(admitted=worker_pb2.Admitted())
            token = await asyncio.wait_for(first, request.kv_source.deadline_seconds or 30)
        finally:
            self.handoffs.forget(tid)
        self.admissions += 1
        self.admitted_over += self.running >= self.max_num_seqs
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            yield worker_pb2.GenerateEvent(tokens=worker_pb2.TokenChunk(ids=[token]))
            await asyncio.sleep(self.hold_s)
            usage = common_pb2.Usage(prompt_tokens=len(request.prompt_ids), completion_tokens=1)
            fin = worker_pb2.Finished(reason=common_pb2.FINISH_REASON_LENGTH, usage=usage)
            yield worker_pb2.GenerateEvent(finished=fin)
        finally:
            self.running -= 1

    async def GetLoad(self, request, context) -> worker_pb2.WorkerLoad:  # noqa: N802, ANN001
        return worker_pb2.WorkerLoad(worker_id="decode", cluster="pd", role="decode",
                                     max_num_seqs=self.max_num_seqs,
                                     num_running=self.running)  # fmt: skip


class PrefillInstantWorker(InstantWorker):
    """A PD-P worker whose prefill is instant: it hands the first token to the decode worker."""

    def __init__(self, handoffs: Handoffs) -> None:
        self.handoffs = handoffs

    async def Prefill(self, request, context) -> worker_pb2.PrefillResult:  # noqa: N802, ANN001
        if not await self.handoffs.deliver(request.destination.transfer_id, 7):
            # abort raises: the router sees the prefill fail
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "unknown transfer")
        return worker_pb2.PrefillResult(request_id=request.request_id, first_token=7,
                                        num_prompt_tokens=len(request.prompt_ids))  # fmt: skip

    async def GetLoad(self, request, context) -> worker_pb2.WorkerLoad:  # noqa: N802, ANN001
        return worker_pb2.WorkerLoad(worker_id="prefill", cluster="pd", role="prefill",
                                     max_num_seqs=256)  # fmt: skip


async def _start_router(
    addresses: list[str], roles: tuple[Role, ...] = ()
) -> tuple[WorkerRegistry, Dispatcher]:
    """A router's registry (heartbeats every 0.5 s, as `prfaas router`) and dispatcher over the
    workers at `addresses` (`mixed` unless `roles` says)."""
    registry = WorkerRegistry(PrefixIndex(16))
    for i, address in enumerate(addresses):
        role = roles[i] if roles else Role.MIXED
        registry.add(WorkerHandle(f"w{i}", "pd", "pd", role, address, "127.0.0.1:1"))
    routing = RoutingConfig(policy="homogeneous-pd", local_cluster="pd")
    dispatcher = Dispatcher(registry, ShortTermController(1e9), DispatchConfig(routing=routing))
    await registry.start()
    while not all(h.healthy for h in registry.workers.values()):
        await asyncio.sleep(0.01)
    return registry, dispatcher


def _request(prompt_tokens: int) -> GenerationRequest:
    # A distinct first token per request: no prefix is shared, every request is placed afresh.
    prompt = (int(uuid.uuid4().int % 50000), *range(prompt_tokens - 1))
    return GenerationRequest(uuid.uuid4().hex, prompt, SamplingParams(max_tokens=1))


# --- throughput: one process per worker and per router replica ------------------------------


def _worker_process(ports: Any, stop: Any) -> None:
    async def main() -> None:
        server, port = await serve_worker(InstantWorker())
        ports.put(port)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await server.stop(0)

    asyncio.run(main())


def _replica_process(
    addresses: list[str], concurrency: int, duration_s: float, prompt_tokens: int, out: Any,
    start_at: float,
) -> None:  # fmt: skip
    async def main() -> dict[str, float]:
        registry, dispatcher = await _start_router(addresses)
        latencies: list[float] = []
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - time.time()))  # replicas start loading together
        measure_from = loop.time() + WARMUP_S
        end = measure_from + duration_s
        cpu: list[float] = []

        async def caller() -> None:
            while loop.time() < end:
                t0 = loop.time()
                async for _ in dispatcher.generate(_request(prompt_tokens)):
                    pass
                if t0 >= measure_from:
                    latencies.append(loop.time() - t0)

        async def cpu_mark() -> None:
            await asyncio.sleep(WARMUP_S)
            cpu.append(time.process_time())

        await asyncio.gather(cpu_mark(), *(caller() for _ in range(concurrency)))
        cpu_s = time.process_time() - cpu[0]
        await registry.stop()
        await dispatcher.close()
        n = len(latencies)
        ordered = sorted(latencies)
        return {
            "requests": n,
            "requests_per_s": n / duration_s,
            "latency_p50_ms": 1e3 * statistics.median(ordered),
            "latency_p99_ms": 1e3 * ordered[min(n - 1, int(0.99 * n))],
            "cpu_s_per_request_ms": 1e3 * cpu_s / max(n, 1),
            "cpu_share": cpu_s / duration_s,
        }

    out.put(asyncio.run(main()))


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) process `pid` has used so far (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_throughput(
    replicas: int, num_workers: int, concurrency: int, duration_s: float, prompt_tokens: int
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ports, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_worker_process, args=(ports, stop)) for _ in range(num_workers)]
    for p in workers:
        p.start()
    addresses = [f"127.0.0.1:{ports.get(timeout=60)}" for _ in workers]
    start_at = time.time() + 8.0  # spawn + imports of every replica before the load starts
    routers = [
        ctx.Process(target=_replica_process,
                    args=(addresses, concurrency, duration_s, prompt_tokens, out, start_at))
        for _ in range(replicas)
    ]  # fmt: skip
    for p in routers:
        p.start()
    # The instant workers' CPU over the measured window (each replica measures its own).
    time.sleep(max(0.0, start_at + WARMUP_S - time.time()))
    workers_cpu = [-_cpu_s(p.pid) for p in workers]
    load_average_start = os.getloadavg()[0]
    time.sleep(duration_s)
    workers_cpu = [c + _cpu_s(p.pid) for c, p in zip(workers_cpu, workers, strict=True)]
    per_replica = [out.get(timeout=120 + duration_s) for _ in routers]
    load_average = os.getloadavg()[0]
    for p in routers:
        p.join()
    stop.set()
    for p in workers:
        p.join()
    requests = sum(r["requests"] for r in per_replica)
    routers_cpu = sum(r["cpu_s_per_request_ms"] * r["requests"] / 1e3 for r in per_replica)
    return {
        "replicas": replicas,
        "requests_per_s": sum(r["requests_per_s"] for r in per_replica),
        "per_replica": per_replica,
        "workers_cpu_ms_per_request": 1e3 * sum(workers_cpu) / max(requests, 1),
        "all_cpu_ms_per_request": 1e3 * (routers_cpu + sum(workers_cpu)) / max(requests, 1),
        "cores_used": (routers_cpu + sum(workers_cpu)) / duration_s,
        "load_average_1m_start": load_average_start,
        "load_average_1m": load_average,
    }


# --- over-admission: seats held at one decode worker ----------------------------------------


@dataclass
class AdmissionRun:
    routers: int
    max_num_seqs: int
    peak_running: int = 0
    running_samples: list[int] = field(default_factory=list)
    """The worker's running count every 10 ms."""
    admissions: int = 0
    admitted_over: int = 0
    worker_refused: int = 0
    """Admissions the decode worker refused (`overloaded`; the router then answered 429)."""
    refused_429: int = 0
    finished: int = 0
    failed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "routers": self.routers,
            "max_num_seqs": self.max_num_seqs,
            "peak_running": self.peak_running,
            "peak_over_max": self.peak_running / self.max_num_seqs,
            "mean_running_over_max": statistics.fmean(self.running_samples) / self.max_num_seqs,
            "time_over_max": sum(n > self.max_num_seqs for n in self.running_samples)
            / max(len(self.running_samples), 1),
            "admissions_finding_no_seat": self.admitted_over / max(self.admissions, 1),
            "finished": self.finished,
            "worker_refused": self.worker_refused,
            "refused_429_retried": self.refused_429,
            "failed": len(self.failed),
        }


async def measure_admission(
    routers: int, max_num_seqs: int, hold_s: float, duration_s: float, slack: int = 0
) -> AdmissionRun:
    handoffs = Handoffs()
    worker = DecodeSeatWorker(handoffs, max_num_seqs, hold_s, slack)
    server, port = await serve_worker(worker)
    prefill_server, prefill_port = await serve_worker(PrefillInstantWorker(handoffs))
    addresses = [f"127.0.0.1:{prefill_port}", f"127.0.0.1:{port}"]
    started = [await _start_router(addresses, (Role.PREFILL, Role.DECODE)) for _ in range(routers)]
    run = AdmissionRun(routers, max_num_seqs)
    loop = asyncio.get_running_loop()
    end = loop.time() + duration_s

    async def caller(i: int) -> None:
        dispatcher = started[i % routers][1]
        while loop.time() < end:
            try:
                async for _ in dispatcher.generate(_request(64)):
                    pass
                run.finished += 1
            except Overloaded:
                run.refused_429 += 1
                await asyncio.sleep(0.005)
            except Exception as exc:  # noqa: BLE001 - counted: the measurement is "none failed"
                run.failed.append(f"{type(exc).__name__}: {exc}")

    async def sampler() -> None:
        while loop.time() < end:
            run.running_samples.append(worker.running)
            await asyncio.sleep(0.01)

    try:
        await asyncio.gather(sampler(), *(caller(i) for i in range(2 * max_num_seqs)))
    finally:
        for registry, dispatcher in started:
            await registry.stop()
            await dispatcher.close()
        await server.stop(0)
        await prefill_server.stop(0)
    run.peak_running, run.admissions, run.admitted_over, run.worker_refused = (
        worker.peak, worker.admissions, worker.admitted_over, worker.refused
    )  # fmt: skip
    return run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--concurrency", type=int, default=32, help="callers per router replica")
    parser.add_argument("--workers", type=int, default=2, help="instant worker processes")
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--max-num-seqs", type=int, default=16, help="over-admission: seats")
    parser.add_argument("--hold-ms", type=float, default=200.0, help="over-admission: per request")
    parser.add_argument("--decode-admission-slack", type=int, default=0,
                        help="over-admission: the decode worker's seat-line slack (negative: it "
                        "never refuses)")  # fmt: skip
    parser.add_argument("--skip-throughput", action="store_true")


def run(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"command": "prfaas bench router-replicas", "args": vars(args)}
    if not args.skip_throughput:
        one, two = (
            measure_throughput(n, args.workers, args.concurrency, args.duration_s,
                               args.prompt_tokens)
            for n in (1, 2)
        )  # fmt: skip
        result["throughput"] = {"one": one, "two": two,
                                "two_over_one": two["requests_per_s"] / one["requests_per_s"]}  # fmt: skip
    hold = args.hold_ms / 1e3
    result["admission"] = [
        asyncio.run(
            measure_admission(
                n, args.max_num_seqs, hold, args.duration_s, args.decode_admission_slack
            )
        ).summary()
        for n in (1, 2)
    ]
    print(json.dumps(result, indent=1))
    if "throughput" in result:
        t = result["throughput"]
        print(f"one router {t['one']['requests_per_s']:.0f} req/s, two replicas "
              f"{t['two']['requests_per_s']:.0f} req/s ({t['two_over_one']:.2f}x; load average "
              f"{t['two']['load_average_1m']:.1f} on {os.cpu_count()} cores)")  # fmt: skip
        for n in ("one", "two"):
            m = t[n]
            per = ", ".join(f"{r['cpu_s_per_request_ms']:.2f}" for r in m["per_replica"])
            print(f"  {m['replicas']} replica(s): CPU ms per request: router(s) {per}, workers "
                  f"{m['workers_cpu_ms_per_request']:.2f}, all {m['all_cpu_ms_per_request']:.2f};"
                  f" {m['cores_used']:.2f} cores used")  # fmt: skip
    for a in result["admission"]:
        print(f"{a['routers']} router(s): peak {a['peak_running']} of {a['max_num_seqs']} seats, "
              f"mean {a['mean_running_over_max']:.2f}x, over for {a['time_over_max']:.0%}, "
              f"{a['failed']} failed, {a['refused_429_retried']} refusals retried "
              f"({a['worker_refused']} by the worker)")  # fmt: skip
    return 0


if __name__ == "__main__":
    _cli = argparse.ArgumentParser(prog="prfaas bench router-replicas", description=__doc__)
    add_arguments(_cli)
    raise SystemExit(run(_cli.parse_args()))
