"""Fake PD and PrfaaS prefill workers: real grpc.aio servers on port 0 with scripted behaviour.

They follow the worker contract of proto/prfaas/v1/worker.proto: every Generate stream starts with
`Admitted` and ends with one `Finished` or `WorkerError`; a decode-only Generate registers its
transfer in the shared `KvHub` *before* sending `Admitted` and waits for a prefill to deliver the
first token through the hub (standing in for the KV transfer). A prefill worker reaches the
receiver by the (host, port) in its `KvDestination`, so a wrong address fails the transfer.
Token i of a completion is `token_base + i` (mod 256), the first coming from the prefill side.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.roles import Role
from prfaas.router.attempt import FlowTimeouts
from prfaas.router.control import ShortTermController
from prfaas.router.dispatcher import DispatchConfig, Dispatcher
from prfaas.router.policy import RoutingConfig
from prfaas.router.prefix_index import PrefixIndex
from prfaas.router.registry import RegistryConfig, WorkerHandle, WorkerRegistry
from prfaas.worker.planner_lease import PlannerLease


@dataclass
class KvHub:
    """(host:port of a KV receiver) -> {transfer_id -> future of the first token}."""

    receivers: dict[str, dict[str, asyncio.Future[int]]] = field(default_factory=dict)


@dataclass
class Script:
    """Scripted behaviour of one fake worker (mutable between requests)."""

    token_base: int = 97
    token_delay_s: float = 0.0
    num_cached_tokens: int = 0
    die_before_tokens: bool = False
    """Generate: abort the stream with UNAVAILABLE right after `Admitted`."""
    die_after_tokens: int | None = None
    """Generate: abort the stream with UNAVAILABLE after this many tokens."""
    prefill_mode: str = "ok"
    """Prefill: "ok", "fail" (UNAVAILABLE) or "stall" (never returns)."""
    prefill_delay_s: float = 0.0
    """Prefill: seconds spent (queue + compute) before the KV is delivered."""
    prefill_seconds: float | None = None
    """Prefill: the compute seconds the result reports (None: none reported)."""
    load: dict[str, float] = field(default_factory=dict)
    load_delay_s: float = 0.0
    """GetLoad answers after this long (a busy worker's slow report)."""
    admit_delay_s: float = 0.0
    """Generate with a KV source: seconds before the first event (the decode worker's wait for its
    step or for memory); `admit_error` then replaces `Admitted` with that error code."""
    admit_error: str = ""
    open_grace_s: float = 2.0
    """Prefill: how long its KV transfer waits for the decode worker to register it (a real
    receiver holds an early OPEN this long, `TcpReceiver.open_grace_s`)."""


class _Base:
    def __init__(self, worker_id: str, role: str, hub: KvHub, cluster: str) -> None:
        self.worker_id, self.role, self.hub, self.cluster = worker_id, role, hub, cluster
        self.script = Script()
        self.generate_requests: list[worker_pb2.GenerateRequest] = []
        self.prefill_requests: list[worker_pb2.PrefillRequest] = []
        self.aborted: list[str] = []
        self.prefills_cancelled: list[str] = []
        """Request ids of Prefill calls the caller cancelled before they returned."""
        self.prefill_arrived_at: list[float] = []
        """`time.monotonic()` when each Prefill call arrived."""
        self.admitted_at: list[float] = []
        """`time.monotonic()` when each decode-only Generate sent `Admitted`."""
        self.call_metadata: list[dict[str, str]] = []
        """Invocation metadata of each Generate / Prefill call (trace context)."""
        self.cache_events: asyncio.Queue[worker_pb2.CacheEventBatch] = asyncio.Queue()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    def first_token(self) -> int:
        return self.script.token_base % 256

    async def Prefill(self, request: worker_pb2.PrefillRequest, context: grpc.aio.ServicerContext):
        self.prefill_requests.append(request)
        self.prefill_arrived_at.append(time.monotonic())
        self.call_metadata.append(dict(context.invocation_metadata() or ()))
        if self.script.prefill_mode == "fail":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted prefill failure")
        if self.script.prefill_mode == "stall":
            await asyncio.sleep(3600)
        try:
            await asyncio.sleep(self.script.prefill_delay_s)
            waiting = await self._registered(request.destination)
        except asyncio.CancelledError:
            self.prefills_cancelled.append(request.request_id)
            raise
        if waiting is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "unknown transfer")
        waiting.set_result(self.first_token())
        n = len(request.prompt_ids)
        return worker_pb2.PrefillResult(request_id=request.request_id,
                                        first_token=self.first_token(), num_prompt_tokens=n,
                                        num_cached_tokens=self.script.num_cached_tokens,
                                        prefill_seconds=self.script.prefill_seconds or 0.0,
                                        bytes_sent=n * 1000)  # fmt: skip

    async def _registered(self, dest: worker_pb2.KvDestination) -> asyncio.Future[int] | None:
        """The decode worker's registration of `dest`'s transfer, waited for up to
        `open_grace_s` (None: it never came)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.script.open_grace_s
        while True:
            waiting = self.hub.receivers.get(f"{dest.host}:{dest.port}", {}).pop(
                dest.transfer_id, None
            )
            if waiting is not None or loop.time() >= give_up:
                return waiting
            await asyncio.sleep(0.005)

    async def Abort(self, request: worker_pb2.AbortRequest, context: grpc.aio.ServicerContext):
        self.aborted.append(request.request_id)
        return worker_pb2.AbortResponse(found=True)

    async def GetLoad(self, request: worker_pb2.LoadRequest, context: grpc.aio.ServicerContext):
        await asyncio.sleep(self.script.load_delay_s)
        return worker_pb2.WorkerLoad(worker_id=self.worker_id, cluster=self.cluster,
                                     role=self.role, **self.script.load)  # fmt: skip

    async def StreamCacheEvents(self, request, context: grpc.aio.ServicerContext):
        while True:
            yield await self.cache_events.get()

    def store_blocks(self, hashes: list[int], checkpoint: bool = True) -> None:
        stored = worker_pb2.CacheEvent.STORED
        events = [worker_pb2.CacheEvent(kind=stored, block_hash=h, block_index=i,
                                        has_checkpoint=checkpoint) for i, h in enumerate(hashes)]  # fmt: skip
        self.cache_events.put_nowait(worker_pb2.CacheEventBatch(worker_id=self.worker_id,
                                                                events=events))  # fmt: skip

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)


class FakePDWorker(_Base, worker_pb2_grpc.WorkerServicer):
    """A PD worker; `kv_addresses` are where senders find its KV receiver (direct and link)."""

    def __init__(self, worker_id: str, role: str, hub: KvHub, kv_addresses: list[str],
                 cluster: str = "pd") -> None:  # fmt: skip
        super().__init__(worker_id, role, hub, cluster)
        self.kv_addresses = kv_addresses
        self.planner_lease = PlannerLease()

    async def Generate(
        self, request: worker_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ):
        self.generate_requests.append(request)
        self.call_metadata.append(dict(context.invocation_metadata() or ()))
        script = self.script
        first: int | None = None
        if request.HasField("kv_source"):
            await asyncio.sleep(script.admit_delay_s)
            if script.admit_error:
                err = worker_pb2.WorkerError(code=script.admit_error, message="scripted refusal")
                yield worker_pb2.GenerateEvent(error=err)
                return
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            for addr in self.kv_addresses:
                self.hub.receivers.setdefault(addr, {})[request.kv_source.transfer_id] = fut
            self.admitted_at.append(time.monotonic())
            yield worker_pb2.GenerateEvent(admitted=worker_pb2.Admitted())
            try:
                first = await asyncio.wait_for(fut, request.kv_source.deadline_seconds)
            except TimeoutError:
                err = worker_pb2.WorkerError(code="kv_transfer_failed", message="kv deadline")
                yield worker_pb2.GenerateEvent(error=err)
                return
        else:
            yield worker_pb2.GenerateEvent(
                admitted=worker_pb2.Admitted(num_cached_tokens=script.num_cached_tokens)
            )
        if script.die_before_tokens:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted death")
        n = request.sampling.max_tokens
        for i in range(n):
            if script.die_after_tokens is not None and i == script.die_after_tokens:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "scripted death")
            await asyncio.sleep(script.token_delay_s)
            tok = first if i == 0 and first is not None else (script.token_base + i) % 256
            yield worker_pb2.GenerateEvent(tokens=worker_pb2.TokenChunk(ids=[tok]))
        usage = common_pb2.Usage(prompt_tokens=len(request.prompt_ids), completion_tokens=n,
                                 cached_tokens=script.num_cached_tokens)  # fmt: skip
        fin = worker_pb2.Finished(reason=common_pb2.FINISH_REASON_LENGTH, usage=usage)
        yield worker_pb2.GenerateEvent(finished=fin)

    async def PlannerLease(
        self, request: worker_pb2.PlannerLeaseRequest, context: grpc.aio.ServicerContext
    ):
        # The real lease logic (prfaas/worker/planner_lease.py) behind the fake's RPC.
        if request.release:
            a = self.planner_lease.release(request.holder)
        else:
            a = self.planner_lease.request(request.holder, request.ttl_s)
        return worker_pb2.PlannerLeaseResponse(
            granted=a.granted, holder=a.holder, remaining_s=a.remaining_s
        )

    async def SetRole(self, request: worker_pb2.SetRoleRequest, context: grpc.aio.ServicerContext):
        previous, self.role = self.role, request.role
        return worker_pb2.SetRoleResponse(previous_role=previous, role=self.role)


class FakePrefillWorker(_Base, worker_pb2_grpc.WorkerServicer):
    def __init__(self, worker_id: str, hub: KvHub, cluster: str = "prfaas") -> None:
        super().__init__(worker_id, "prefill", hub, cluster)


async def serve(worker: _Base) -> int:
    """Start `worker` on 127.0.0.1:0 with a SERVING health service; returns the port."""
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServicer_to_server(worker, server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    worker.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    worker.server = server
    return worker.port


@dataclass
class FakeCluster:
    """Fake workers plus a running registry and dispatcher over them (see `start_cluster`)."""

    pd: list[FakePDWorker]
    prfaas: list[FakePrefillWorker]
    registry: WorkerRegistry
    dispatcher: Dispatcher

    def worker(self, worker_id: str) -> _Base:
        return next(w for w in [*self.pd, *self.prfaas] if w.worker_id == worker_id)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not all(h.healthy for h in self.registry.workers.values()):
            if loop.time() > deadline:
                raise TimeoutError("fake workers never became healthy")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.registry.stop()
        await self.dispatcher.close()
        for w in [*self.pd, *self.prfaas]:
            await w.stop()


async def start_cluster(
    pd_roles: tuple[str, ...] = ("prefill", "decode"),
    num_prfaas: int = 1,
    policy: str = "prfaas",
    threshold: float = 64,
    block_size: int = 16,
    timeouts: FlowTimeouts | None = None,
    registry_config: RegistryConfig | None = None,
    **dispatch: object,
) -> FakeCluster:
    """Start fakes, register them (PD worker i: KV direct 10.0.0.i:7000, via link 10.9.0.i:7400)
    and wait until every one is healthy."""
    hub = KvHub()
    pd = [
        FakePDWorker(f"pd-{i}", role, hub, [f"10.0.0.{i}:7000", f"10.9.0.{i}:7400"])
        for i, role in enumerate(pd_roles)
    ]
    prfaas = [FakePrefillWorker(f"prfaas-{j}", hub) for j in range(num_prfaas)]
    registry = WorkerRegistry(
        PrefixIndex(block_size), registry_config or RegistryConfig(poll_interval_s=0.05)
    )
    for w in prfaas:
        port = await serve(w)
        registry.add(
            WorkerHandle(w.worker_id, "prefill", "prfaas", Role.PRFAAS, f"127.0.0.1:{port}")
        )
    for i, w in enumerate(pd):
        port = await serve(w)
        registry.add(WorkerHandle(w.worker_id, "pd", "pd", Role(w.role), f"127.0.0.1:{port}",
                                  f"10.0.0.{i}:7000", f"10.9.0.{i}:7400"))  # fmt: skip
    config = DispatchConfig(
        model_name="fake", routing=RoutingConfig(policy=policy, local_cluster="pd"),
        timeouts=timeouts or FlowTimeouts(admit_s=5, token_s=5), **dispatch,  # type: ignore[arg-type]
    )  # fmt: skip
    dispatcher = Dispatcher(registry, ShortTermController(threshold), config)
    cluster = FakeCluster(pd, prfaas, registry, dispatcher)
    await registry.start()
    await cluster.wait_ready()
    return cluster
