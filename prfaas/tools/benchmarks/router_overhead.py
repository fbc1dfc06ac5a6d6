"""`prfaas bench router`: the router's own added latency per request, against instant workers.

One in-process fake `mixed` PD worker answers every Generate at once (Admitted, one token,
Finished) and every heartbeat. Each round sends the same request twice, alternating the order:
  baseline  the Generate call made directly on the worker's gRPC channel (what any client pays);
  router    `Dispatcher.generate` on a running registry: prefix match, policy, placement
            accounting, timeline (spans + stage histograms), the same Generate call, relay.
The added latency is router minus baseline of the same round; reported as p50/p90/p99 with both
sides' p50 and their ratio, and the router's `route` stage (decision alone). Goal: added p50 below
1 ms. Runs on one event loop in one process, so a loaded machine inflates both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.metrics import RouterMetrics
from prfaas.roles import Role
from prfaas.router.control import ShortTermController
from prfaas.router.dispatcher import DispatchConfig, Dispatcher
from prfaas.router.generation_backend import GenerationRequest
from prfaas.router.policy import RoutingConfig
from prfaas.router.prefix_index import PrefixIndex
from prfaas.router.registry import WorkerHandle, WorkerRegistry
from prfaas.sampling import SamplingParams


class InstantWorker(worker_pb2_grpc.WorkerServicer):
    """A `mixed` PD worker that does no work: the cost left is gRPC and the router."""

    async def Generate(self, request, context) -> AsyncIterator[worker_pb2.GenerateEvent]:  # noqa: N802, ANN001
        yield worker_pb2.GenerateEvent(admitted=worker_pb2.Admitted())
        yield worker_pb2.GenerateEvent(tokens=worker_pb2.TokenChunk(ids=[7]))
        usage = common_pb2.Usage(prompt_tokens=len(request.prompt_ids), completion_tokens=1)
        fin = worker_pb2.Finished(reason=common_pb2.FINISH_REASON_LENGTH, usage=usage)
        yield worker_pb2.GenerateEvent(finished=fin)

    async def GetLoad(self, request, context) -> worker_pb2.WorkerLoad:  # noqa: N802, ANN001
        return worker_pb2.WorkerLoad(worker_id="instant", cluster="pd", role="mixed",
                                     max_num_seqs=256)  # fmt: skip

    async def StreamCacheEvents(self, request, context):  # noqa: N802, ANN001, ANN201
        await asyncio.Event().wait()
        yield worker_pb2.CacheEventBatch()

    async def Abort(self, request, context) -> worker_pb2.AbortResponse:  # noqa: N802, ANN001
        return worker_pb2.AbortResponse(found=False)


async def serve_worker(
    servicer: worker_pb2_grpc.WorkerServicer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A fake worker (instant unless `servicer` says) with a SERVING health service on
    127.0.0.1:0: (server, port)."""
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(servicer or InstantWorker(), server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(num_requests: int, prompt_tokens: int) -> dict[str, float]:
    server, port = await serve_worker()
    registry = WorkerRegistry(PrefixIndex(16))
    worker = registry.add(
        WorkerHandle("instant", "pd", "pd", Role.MIXED, f"127.0.0.1:{port}", "x:1")
    )
    metrics = RouterMetrics(CollectorRegistry(), "bench")
    routing = RoutingConfig(policy="homogeneous-pd", local_cluster="pd")
    dispatcher = Dispatcher(registry, ShortTermController(1e9),
                            DispatchConfig(routing=routing), metrics=metrics)  # fmt: skip
    await registry.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = worker_pb2_grpc.WorkerStub(channel)
    try:
        while not worker.healthy:
            await asyncio.sleep(0.01)
        prompt = tuple(range(prompt_tokens))

        async def direct() -> None:
            call = stub.Generate(worker_pb2.GenerateRequest(
                request_id=uuid.uuid4().hex, prompt_ids=prompt,
                sampling=common_pb2.SamplingParams(max_tokens=1)))  # fmt: skip
            async for _ in call:
                pass

        async def routed() -> None:
            req = GenerationRequest(uuid.uuid4().hex, prompt, SamplingParams(max_tokens=1))
            async for _ in dispatcher.generate(req):
                pass

        for _ in range(20):  # warm both paths (channels, code)
            await direct()
            await routed()
        base, via, added = [], [], []
        for i in range(num_requests):
            times = {}
            for name, fn in (("direct", direct), ("routed", routed))[:: 1 if i % 2 else -1]:
                t0 = time.perf_counter()
                await fn()
                times[name] = time.perf_counter() - t0
            base.append(times["direct"])
            via.append(times["routed"])
            added.append(times["routed"] - times["direct"])
        route_sum = metrics.registry.get_sample_value(
            "prfaas_request_stage_seconds_sum", {"stage": "route"}
        )
        route_count = metrics.registry.get_sample_value(
            "prfaas_request_stage_seconds_count", {"stage": "route"}
        )
        if route_sum is None or not route_count:
            raise RuntimeError("the router recorded no route stage: nothing was routed")
        route = route_sum / route_count
        return {
            "requests": num_requests,
            "prompt_tokens": prompt_tokens,
            "direct_p50_ms": 1e3 * statistics.median(base),
            "routed_p50_ms": 1e3 * statistics.median(via),
            "added_p50_ms": 1e3 * statistics.median(added),
            "added_p90_ms": 1e3 * _pct(added, 0.9),
            "added_p99_ms": 1e3 * _pct(added, 0.99),
            "routed_over_direct_p50": statistics.median(via) / statistics.median(base),
            "route_stage_mean_ms": 1e3 * route,
            "load_average_1m": os.getloadavg()[0],
        }
    finally:
        await channel.close()
        await registry.stop()
        await dispatcher.close()
        await server.stop(0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=500, help="measured rounds")
    parser.add_argument("--prompt-tokens", type=int, default=1024)


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(measure(args.requests, args.prompt_tokens))
    print(json.dumps(result, indent=1))
    ok = result["added_p50_ms"] < 1.0
    print(f"router added latency p50 {result['added_p50_ms']:.3f} ms "
          f"({'meets' if ok else 'misses'} the 1 ms goal)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prfaas bench router", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
