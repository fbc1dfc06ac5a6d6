"""Worker registry: who the workers are, where to reach them, and how they are doing.

Workers enter from the topology file (`from_topology`) or by `Router.RegisterWorker` (`register`).
A registered worker re-registers every few seconds (its keepalive, and how a restarted or added
router replica learns it): a repeat with the same addresses keeps the existing handle. A registered
worker that dies or stops serving (NOT_SERVING at the end of its drain) is forgotten entirely — it
registers again when it comes back; topology workers stay known (the launcher restarts them in
place).
Each worker gets one gRPC channel and one monitor task (started by `start()`, owned by the
registry, cancelled by `remove()`/`stop()`) that every `poll_interval_s`:
  1. calls the standard Health service, then `GetLoad`, each with a `rpc_timeout_s` deadline;
  2. on success stores the `WorkerLoad` (the heartbeat) and marks the worker healthy;
  3. tells *dead* from *slow*. Dead: the port refuses (`UNAVAILABLE`: process or port gone) on
     `max_failures` consecutive polls, or the worker says NOT_SERVING (shutting down). Slow: a
     deadline passes but nothing refused — a busy worker keeps its place, counts as loaded for
     placement (`WorkerHandle.load_stale`), and is taken out only after `unresponsive_s` without a
     single answer (a stopped process). Workers answer both RPCs without waiting for an engine
     step, so a long step never looks like death. A dead worker's prefix-index entries are
     dropped (a restarted worker starts cold and re-announces its cache).
A second task per worker follows `StreamCacheEvents` into the `PrefixIndex`, reconnecting after
`reconnect_s` when the stream breaks. `snapshots()` is what the policy sees at decision time.
Everything runs on the router's event loop; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from prfaas._proto.prfaas.v1 import router_pb2, worker_pb2, worker_pb2_grpc
from prfaas.cache_event_kind import CacheEventKind
from prfaas.roles import Role
from prfaas.router.policy import WorkerSnapshot
from prfaas.router.prefix_index import CacheEvent, PrefixIndex
from prfaas.security.channels import open_worker_channel
from prfaas.topology import Topology

log = logging.getLogger(__name__)

UNLIMITED_KV_TOKENS = 1 << 30
"""`WorkerLoad` carries cache bytes, not free tokens, and a full prefix cache is reclaimable, so
the registry does not gate decode placement on KV room (the worker rejects what cannot fit)."""


@dataclass(frozen=True)
class RegistryConfig:
    poll_interval_s: float = 0.5
    """Period of the health check + `GetLoad` heartbeat."""
    rpc_timeout_s: float = 2.0
    """Deadline of each heartbeat RPC."""
    max_failures: int = 3
    """Consecutive refused heartbeats (port gone) after which a worker counts as dead."""
    unresponsive_s: float = 15.0
    """Seconds without any answer (deadlines passing, nothing refused) after which a worker is
    taken out of placement: a stopped or wedged process, not a busy one."""
    remove_dead: bool = False
    """Forget a dead worker entirely (registered workers) instead of only marking it unhealthy."""
    reconnect_s: float = 0.5
    """Pause before re-subscribing to a broken cache-event stream."""


@dataclass
class WorkerHandle:
    """One worker: identity, addresses, stubs and the latest heartbeat. Owned by the registry."""

    worker_id: str
    kind: str
    """"prefill" (PrfaaS cluster) or "pd" (local PD cluster)."""
    cluster: str
    role: Role
    grpc_address: str
    kv_address: str = ""
    """host:port of the KV receiver as local (PD-P) senders reach it."""
    kv_link_address: str = ""
    """host:port of the KV receiver as PrfaaS senders reach it across the link."""
    channel: grpc.aio.Channel | None = None
    healthy: bool = False
    draining: bool = False
    load: worker_pb2.WorkerLoad | None = None
    # This router's own in-flight work on the worker, updated at once by the dispatcher's
    # attempts (heartbeats lag by a poll interval, and placing on stale counts herds requests
    # onto one worker): requests whose prefill runs or waits here, their uncached tokens,
    # requests decoding here (a seat, taken once their KV is complete here: the first token),
    # and requests placed to decode here whose prefill is not done yet (no seat: they spread
    # placement, and the prefill queue bound, not the seats, limits them).
    inflight_prefills: int = 0
    inflight_prefill_tokens: int = 0
    inflight_decodes: int = 0
    pending_decodes: int = 0
    placed_prefills: dict[int, tuple[float, int]] = field(default_factory=dict)
    """This router's prefills running or waiting here, by attempt: (monotonic time placed,
    uncached tokens). Those placed after `load_asked_s` are not in the worker's latest report
    (`prefill_estimate.predicted_wait_s` adds them to its backlog)."""
    load_asked_s: float = 0.0
    """monotonic time the `GetLoad` behind `load` was sent (0: no report yet)."""
    seat_changes: list[tuple[float, int]] = field(default_factory=list)
    """This router's decode seats taken (+1) and given back (-1) here since `load_asked_s`, with
    their monotonic time: they correct the reported batch (`reported_running`)."""
    drain_tokens_per_s: float = 0.0
    """Rate at which this worker drained the prefills this router queued on it (learned by
    `prefill_estimate.observe_drain`; 0 until a first sample)."""
    num_failures: int = 0
    """Consecutive heartbeats refused outright (UNAVAILABLE)."""
    last_seen_s: float = 0.0
    """monotonic time of the last answered heartbeat (0: never)."""
    load_stale: bool = False
    """The last heartbeat timed out: the load is old and the worker is treated as busy."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    registered_by: str | None = None
    """Authenticated identity that registered the worker (None: topology or open mode)."""
    self_registered: bool = False
    """Joined by `RegisterWorker` (not the topology): forgotten when it dies or stops serving."""
    out_reason: str = ""
    """Why the worker was last taken out of placement ("": it has not been, or is back)."""

    @property
    def stub(self) -> worker_pb2_grpc.WorkerStub:
        """The `Worker` service on this worker's channel (what it serves depends on its role)."""
        return worker_pb2_grpc.WorkerStub(self.channel)

    def kv_destination(self, sender_kind: str) -> tuple[str, int]:
        """Where a sender of `sender_kind` connects to reach this worker's KV receiver."""
        addr = self.kv_link_address if sender_kind == "prefill" and self.kv_link_address else None
        host, _, port = (addr or self.kv_address).rpartition(":")
        return host, int(port)

    def seat_change(self, delta: int) -> None:
        """One of this router's requests took (+1) or gave back (-1) a decode seat here."""
        self.inflight_decodes += delta
        self.seat_changes.append((time.monotonic(), delta))

    def load_reported(self, load: worker_pb2.WorkerLoad, asked: float) -> None:
        """A new report, from the `GetLoad` sent at `asked`: own seat changes before it are in it."""
        self.load, self.load_asked_s = load, asked
        self.seat_changes = [c for c in self.seat_changes if c[0] >= asked]

    def reported_running(self) -> int:
        """The worker's reported batch (running + kv_ready, every router's requests) corrected by
        this router's own seat changes since the report was asked: a seat one of its requests
        gave back is free now, not a poll later (with the worker refusing past its seats, a
        report one poll old that still counted it kept the seat idle until the next poll)."""
        if self.load is None:
            return 0
        return max(0, self.load.num_running + sum(d for _, d in self.seat_changes))

    @property
    def max_decodes(self) -> int:
        """Concurrent decodes the worker admits (its engine's max_num_seqs; 64 until reported)."""
        return (self.load.max_num_seqs if self.load is not None else 0) or 64

    def snapshot(self) -> WorkerSnapshot:
        load = self.load
        queue = 0 if load is None else load.num_waiting + load.num_waiting_for_kv
        if load is not None and self.role in (Role.PRFAAS, Role.PREFILL):
            queue += load.num_running
        queue = max(queue, self.inflight_prefills)
        seats: float | None = None
        if self.role is Role.DECODE:
            queue = max(queue, self.pending_decodes)
        if self.role in (Role.DECODE, Role.MIXED):
            # Decode placement: seats are the running batch against the worker's cap (Eq. 5's
            # BS_max); ranking also counts the requests placed here whose KV is still to come,
            # or a burst would herd onto whichever decoder had the fewest running. The batch is
            # the larger of this router's own count (current) and the worker's report (one poll
            # old, but it counts every router replica's requests: with the own count alone, two
            # replicas filled a worker to twice its seats, `prfaas bench router-replicas`),
            # corrected by this router's own seat changes since (`reported_running`).
            running = max(self.inflight_decodes, self.reported_running())
            seats = running / self.max_decodes
            utilization = (running + self.pending_decodes) / self.max_decodes
        else:
            utilization = 0.0 if load is None else load.busy_fraction
            if self.load_stale:
                utilization = 1.0  # too busy to answer in time: last choice, still a choice
        return WorkerSnapshot(
            worker_id=self.worker_id,
            cluster=self.cluster,
            role=self.role,
            healthy=self.healthy,
            draining=self.draining or (load is not None and load.draining),
            queue_depth=queue,
            load=utilization,
            seats_taken=seats,
            free_kv_tokens=UNLIMITED_KV_TOKENS,
        )


def handles_from_topology(topo: Topology) -> list[WorkerHandle]:
    """The workers a topology file implies (the same addresses `prfaas up` starts them on)."""
    out = []
    for w in topo.workers():
        if w.kind == "prefill":
            out.append(
                WorkerHandle(w.worker_id, "prefill", w.cluster, Role.PRFAAS, w.grpc, w.kv_direct)
            )
        else:
            out.append(
                WorkerHandle(
                    w.worker_id, "pd", w.cluster, Role(w.role), w.grpc, w.kv_direct, w.kv_via_link
                )
            )
    return out


class WorkerRegistry:
    """The set of workers; mutated only on the router's event loop."""

    def __init__(self, index: PrefixIndex, config: RegistryConfig | None = None) -> None:
        self.index = index
        self.config = config or RegistryConfig()
        self.workers: dict[str, WorkerHandle] = {}
        self._started = False

    def add(self, handle: WorkerHandle) -> WorkerHandle:
        """Add (or replace, by id) a worker; its monitors start now if the registry is running."""
        old = self.workers.get(handle.worker_id)
        if old is not None:
            self._forget(old)
        handle.channel = open_worker_channel(handle.grpc_address, handle.worker_id)
        self.workers[handle.worker_id] = handle
        self.index.register_worker(handle.worker_id, handle.cluster)
        if self._started:
            self._start_monitors(handle)
        log.info("worker %s (%s, %s) at %s", handle.worker_id, handle.cluster, handle.role,
                 handle.grpc_address)  # fmt: skip
        return handle

    def register(
        self, req: router_pb2.RegisterWorkerRequest, identity: str | None = None
    ) -> WorkerHandle:
        """`Router.RegisterWorker`: a prefill worker gets role `prfaas`, a PD worker its role.
        A registered PD worker has one KV address, used by local and PrfaaS senders alike.
        `identity` is the caller's authenticated identity (None: open mode). A worker id that
        one identity registered is not taken over by another: PermissionError, logged."""
        old = self.workers.get(req.worker_id)
        if old is not None and old.registered_by not in (None, identity):
            log.warning("RegisterWorker %s from %s refused: registered by %s", req.worker_id,
                        identity, old.registered_by)  # fmt: skip
            raise PermissionError(f"worker {req.worker_id} belongs to another identity")
        kv_link = req.kv_link_address or req.kv_address
        if (
            old is not None
            and (old.kind, old.cluster, old.grpc_address)
            == (req.kind, req.cluster, req.grpc_address)
            and (old.kv_address, old.kv_link_address) in ((req.kv_address, kv_link), ("", ""))
        ):
            return old  # the worker's periodic keepalive (or a topology worker announcing itself)
        role = Role.PRFAAS if req.kind == "prefill" else Role(req.role or Role.MIXED)
        handle = WorkerHandle(req.worker_id, req.kind, req.cluster, role, req.grpc_address,
                              req.kv_address, kv_link, registered_by=identity,
                              self_registered=True)  # fmt: skip
        return self.add(handle)

    def remove(self, worker_id: str) -> None:
        handle = self.workers.pop(worker_id, None)
        if handle is not None:
            self._forget(handle)
            self.index.remove_worker(worker_id)
            log.warning("worker %s removed", worker_id)

    def _forget(self, handle: WorkerHandle) -> None:
        for task in handle.tasks:
            task.cancel()
        handle.tasks.clear()
        if handle.channel is not None:
            # Closing is async; schedule it so `remove` stays synchronous.
            asyncio.get_running_loop().create_task(handle.channel.close())

    def get(self, worker_id: str) -> WorkerHandle | None:
        return self.workers.get(worker_id)

    def snapshots(self) -> list[WorkerSnapshot]:
        return [h.snapshot() for h in self.workers.values()]

    def healthy(self, cluster: str | None = None) -> list[WorkerHandle]:
        return [
            h for h in self.workers.values() if h.healthy and cluster in (None, h.cluster)
        ]  # fmt: skip

    def reported_max_context(self) -> int | None:
        """The smallest context limit (`WorkerLoad.max_context`) the healthy workers report: a
        request within it fits on whichever worker it is placed. None until one reports."""
        limits = [h.load.max_context for h in self.healthy() if h.load is not None]
        return min((n for n in limits if n > 0), default=None)

    async def start(self) -> None:
        self._started = True
        for handle in self.workers.values():
            self._start_monitors(handle)

    async def stop(self) -> None:
        self._started = False
        tasks = [t for h in self.workers.values() for t in h.tasks]
        for handle in list(self.workers.values()):
            self._forget(handle)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def set_role(self, worker_id: str, role: Role, timeout_s: float = 120.0) -> bool:
        """`SetRole` on a PD worker (it drains first); routes nothing to it meanwhile."""
        handle = self.workers.get(worker_id)
        if handle is None or handle.kind != "pd":
            return False
        handle.draining = True
        try:
            await handle.stub.SetRole(worker_pb2.SetRoleRequest(role=role.value), timeout=timeout_s)
            handle.role = role
            return True
        except grpc.aio.AioRpcError as exc:
            log.error("SetRole %s -> %s failed: %s", worker_id, role, exc.code())
            return False
        finally:
            handle.draining = False

    def _start_monitors(self, handle: WorkerHandle) -> None:
        loop = asyncio.get_running_loop()
        handle.tasks = [
            loop.create_task(self._heartbeat(handle), name=f"heartbeat-{handle.worker_id}"),
            loop.create_task(self._cache_events(handle), name=f"cache-{handle.worker_id}"),
        ]

    async def heartbeat_once(self, handle: WorkerHandle) -> bool:
        """One health check + `GetLoad`; updates the handle. Returns whether both answered."""
        timeout = self.config.rpc_timeout_s
        try:
            health = health_pb2_grpc.HealthStub(handle.channel)
            resp = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            if resp.status != health_pb2.HealthCheckResponse.SERVING:
                self._mark_dead(handle, f"health status {resp.status}")
                return False
            asked = time.monotonic()
            load = await handle.stub.GetLoad(worker_pb2.LoadRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            self._heartbeat_failed(handle, exc)
            return False
        if not handle.healthy:
            log.info("worker %s healthy", handle.worker_id)
        handle.load_reported(load, asked)
        handle.load_stale, handle.out_reason = False, ""
        handle.healthy, handle.num_failures = True, 0
        handle.last_seen_s = time.monotonic()
        if load.role and handle.kind == "pd":
            handle.role = Role(load.role)
        return True

    def _heartbeat_failed(self, handle: WorkerHandle, exc: grpc.aio.AioRpcError) -> None:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            # Refused: nothing listens on the port (or the channel cannot connect). Dead after a
            # few in a row, so one reconnect hiccup does not drop a worker.
            handle.num_failures += 1
            if handle.num_failures >= self.config.max_failures:
                self._mark_dead(handle, f"{handle.num_failures} heartbeats refused")
            return
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            # Answering, but not to us: a credentials mismatch, which waiting will not fix.
            if handle.healthy:
                log.error("worker %s refuses the router's credentials: %s", handle.worker_id,
                          exc.details())  # fmt: skip
            self._mark_dead(handle, f"credentials refused ({exc.code().name})")
            return
        # Slow (deadline) or any other answer that is not "gone": busy, not dead.
        handle.load_stale = True
        silent_s = time.monotonic() - handle.last_seen_s
        if handle.last_seen_s and silent_s >= self.config.unresponsive_s:
            self._mark_dead(handle, f"no answer for {silent_s:.0f} s ({exc.code().name})")
        else:
            log.debug("worker %s slow to answer: %s", handle.worker_id, exc.code().name)

    def _mark_dead(self, handle: WorkerHandle, why: str) -> None:
        handle.out_reason = why
        if not handle.healthy:
            return
        handle.healthy = False
        self.index.remove_worker(handle.worker_id)
        self.index.register_worker(handle.worker_id, handle.cluster)
        log.warning("worker %s out of placement: %s", handle.worker_id, why)

    async def _heartbeat(self, handle: WorkerHandle) -> None:
        while True:
            await self.heartbeat_once(handle)
            refused = handle.num_failures >= self.config.max_failures
            dead = not handle.healthy and (refused or bool(handle.out_reason))
            if dead and (self.config.remove_dead or handle.self_registered):
                self.remove(handle.worker_id)
                return
            await asyncio.sleep(self.config.poll_interval_s)

    async def _cache_events(self, handle: WorkerHandle) -> None:
        while True:
            stream = handle.stub.StreamCacheEvents(worker_pb2.CacheEventsRequest())
            try:
                async for batch in stream:
                    for ev in batch.events:
                        kind = CacheEventKind.from_wire(ev.kind)
                        # Every known kind is applied, checkpoint-only ones too: a checkpoint
                        # evicted before its block must shorten the predicted hit, and an
                        # imported prefix's end checkpoint is stored after its blocks (sparse
                        # checkpoints, prfaas/checkpoint_rule.py, make both common).
                        if kind is not None:
                            self.index.apply(CacheEvent(handle.worker_id, kind, ev.block_hash,
                                                        ev.has_checkpoint))  # fmt: skip
            except grpc.aio.AioRpcError as exc:
                log.debug("cache events of %s broke: %s", handle.worker_id, exc.code())
            finally:
                stream.cancel()
            # The worker's cache state is unknown until it re-announces: start from empty.
            with contextlib.suppress(KeyError):
                self.index.apply(CacheEvent(handle.worker_id, CacheEventKind.CLEARED))
            await asyncio.sleep(self.config.reconnect_s)
