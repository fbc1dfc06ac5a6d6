"""Serve a worker: gRPC (+ standard health service), Prometheus, router registration, shutdown.

Lifecycle:
1. Build the runtime (model/backend, engine thread, KV sender/receiver) and start it.
2. Start the gRPC server with the worker's servicer and `grpc.health.v1`; health turns SERVING only
   after the runtime started (warm-up done).
3. Optionally register with the routers (`--router`, repeated as a keepalive: registration.py);
   a router started without topology workers learns every worker this way.
4. On SIGTERM/SIGINT (or a Kubernetes preStop): drain — stop registering, report `draining` so
   routers place nothing new, finish what is in flight (up to `--drain-timeout-s`) — then health
   NOT_SERVING (routers forget a registered worker that stops serving), stop accepting, give
   in-flight RPCs a grace period, and stop the runtime (aborting what is left, freeing buffers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from prfaas import tracing
from prfaas._proto.prfaas.v1 import router_pb2
from prfaas.metrics import serve as serve_metrics
from prfaas.security import channels
from prfaas.security.binding import bind_grpc
from prfaas.security.interceptor import AuthInterceptor
from prfaas.worker.registration import RouterRegistration
from prfaas.worker.runtime import WorkerRuntime
from prfaas.worker.shared_rpcs import CommonRpcs

log = logging.getLogger(__name__)
GRACE_S = 5.0


def _registration_request(
    runtime: WorkerRuntime, servicer: CommonRpcs, kind: str, kv_address: str, kv_link_address: str
) -> router_pb2.RegisterWorkerRequest:
    return router_pb2.RegisterWorkerRequest(
        worker_id=runtime.worker_id,
        kind=kind,
        cluster=runtime.cluster,
        grpc_address=runtime.options.grpc_address,
        kv_address=kv_address,
        kv_link_address=kv_link_address,
        role=servicer.role,  # the current role: the planner may have changed it (SetRole)
    )


async def drain(
    runtime: WorkerRuntime, servicer: CommonRpcs, noticed_s: float, timeout_s: float
) -> int:
    """Stop taking new work and let what is here finish: report `draining` (routers stop placing
    here within one poll), wait at least `noticed_s` for them to notice and until no request is
    in flight, at most `timeout_s`. Returns how many requests were still in flight (the caller's
    `runtime.stop()` aborts them; routers retry aborted requests that produced no token)."""
    servicer.stopping = True
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout_s
    while loop.time() < deadline and (runtime.active or loop.time() - start < noticed_s):
        await asyncio.sleep(0.05)
    if runtime.active:
        log.warning("drain timed out after %.0f s with %d requests in flight", timeout_s,
                    len(runtime.active))  # fmt: skip
    return len(runtime.active)


async def serve_worker(
    runtime: WorkerRuntime,
    servicer: CommonRpcs,
    add_servicer: Callable[[grpc.aio.Server], None],
    *,
    kind: str,
    kv_address: str = "",
    kv_link_address: str = "",
) -> None:
    # Spans only when the environment asks for them (prfaas/tracing.py).
    tracing.configure(f"prfaas-worker-{runtime.worker_id}")
    # Only the router may call this worker's RPCs (token or mTLS; open on loopback without).
    credentials = runtime.security.grpc
    channels.configure(credentials)
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(credentials)],
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    add_servicer(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{runtime.options.host}:{runtime.options.grpc_port}"
    bind_grpc(server, address, credentials, insecure=runtime.security.insecure)  # before warm-up
    await runtime.start()
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if runtime.options.metrics_port:
        serve_metrics(runtime.registry, runtime.options.metrics_port, runtime.options.host)
    log.info("worker %s serving gRPC on %s", runtime.worker_id, address)
    print(f"worker {runtime.worker_id} ready on {address}", flush=True)
    registration = None
    if runtime.options.router:
        registration = RouterRegistration(
            runtime.options.router,
            lambda: _registration_request(runtime, servicer, kind, kv_address, kv_link_address),
            runtime.options.register_interval_s,
        )
        registration.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if registration is not None:
        # Drain only for routers that learned us by registration; under `prfaas up` the launcher
        # owns stopping (it stops the router first and wants a prompt exit).
        log.info("worker %s draining", runtime.worker_id)
        await registration.close()
        # Two of the slowest router's polls: every router has seen `draining` before we wait on.
        noticed_s = 2 * (registration.heartbeat_s or 0.5)
        await drain(runtime, servicer, noticed_s, runtime.options.drain_timeout_s)
        await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.sleep(noticed_s)  # routers see NOT_SERVING and forget this worker
    else:
        await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    log.info("worker %s shutting down", runtime.worker_id)
    await server.stop(GRACE_S)
    await runtime.stop()


def run_async(main: Callable[[], Coroutine[Any, Any, object]]) -> int:
    """Run a coroutine factory under uvloop when available."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0
