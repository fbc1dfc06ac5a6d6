"""Serve a worker: gRPC (+ standard health service), Prometheus, router registration, shutdown.

Lifecycle:
1. Build the runtime (model/backend, engine thread, KV sender/receiver) and start it.
2. Start the gRPC server with the worker's servicer and `grpc.health.v1`; health turns SERVING only
   after the runtime started (warm-up done).
3. Optionally register with the router (`--router`); the router also knows workers from topology.
4. On SIGTERM/SIGINT: health NOT_SERVING, stop accepting, give in-flight RPCs a grace period,
   then stop the runtime (aborting what is left, freeing every buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from prfaas.metrics import serve as serve_metrics
from prfaas.security import channels, identities
from prfaas.security.binding import bind_grpc
from prfaas.security.interceptor import AuthInterceptor
from prfaas.security.options import credentials_from_args
from prfaas.worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)
GRACE_S = 5.0


async def _register(runtime: WorkerRuntime, kind: str, role: str, kv_address: str) -> None:
    from prfaas._proto.prfaas.v1 import router_pb2, router_pb2_grpc

    args = runtime.args
    async with channels.open_channel(args.router, identities.ROUTER) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        for attempt in range(30):
            try:
                await stub.RegisterWorker(
                    router_pb2.RegisterWorkerRequest(
                        worker_id=runtime.worker_id,
                        kind=kind,
                        cluster=runtime.cluster,
                        grpc_address=f"{args.host}:{args.grpc_port}",
                        kv_address=kv_address,
                        role=role,
                    ),
                    timeout=2.0,
                )
                return
            except grpc.aio.AioRpcError as exc:
                log.info("router not reachable yet (%s), retry %d", exc.code().name, attempt)
                await asyncio.sleep(1.0)
    log.warning("could not register with router %s", args.router)


async def serve_worker(
    runtime: WorkerRuntime,
    add_servicer: Callable[[grpc.aio.Server], None],
    *,
    kind: str,
    role: str,
    kv_address: str = "",
) -> None:
    # Only the router may call this worker's RPCs (token or mTLS; open on loopback without).
    credentials = credentials_from_args(runtime.args, lambda: identities.worker(runtime.worker_id))
    channels.configure(credentials)
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(credentials)],
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    add_servicer(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{runtime.args.host}:{runtime.args.grpc_port}"
    bind_grpc(server, address, credentials, insecure=runtime.args.insecure)  # before warm-up
    await runtime.start()
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if runtime.args.metrics_port:
        serve_metrics(runtime.registry, runtime.args.metrics_port, runtime.args.host)
    log.info("worker %s serving gRPC on %s", runtime.worker_id, address)
    print(f"worker {runtime.worker_id} ready on {address}", flush=True)
    if runtime.args.router:
        asyncio.get_running_loop().create_task(_register(runtime, kind, role, kv_address))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("worker %s shutting down", runtime.worker_id)
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(GRACE_S)
    await runtime.stop()


def run_async(main: Callable[[], object]) -> int:
    """Run a coroutine factory under uvloop when available."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop

        uvloop.run(main())  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main())  # type: ignore[arg-type]
    return 0
