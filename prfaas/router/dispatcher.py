"""The dispatcher: the router's `GenerationBackend`, executing routing decisions over gRPC.

Per request (`generate_routed`, on the router's event loop):
  1. prefix match in the global index, then `policy.route` with the short-term controller's
     effective threshold and scarce/abundant regime; the decision is logged, counted by policy,
     route and reason, and fed to the long-term controller's statistics;
  2. when the decision moves a cache across clusters (`cross_cluster_transfer`), the holder
     exports it into the computing worker first (`prefix_move.move_prefix`, with a deadline
     from its bytes over the link); a failed move is logged and counted, and the request simply
     runs without that cache;
  3. `flows.Attempt` runs the local or two-worker flow and relays its events;
  4. a `Retry` (failure before any token) re-routes without the failed worker; a failed or
     stalled *remote* prefill re-routes with the PrfaaS cluster excluded (the local fallback);
     after `max_attempts` or once tokens were sent the request fails with `BackendError`, except
     when the last worker tried refused for capacity (`overloaded`: its decode seats are full,
     worker/seat_line.py), which is 429 with Retry-After (`Overloaded`), as is a retry that
     finds no worker left;
  5. however the request ends early (error, client abort, cancellation) every worker involved
     gets an `Abort` and every call is cancelled.
`generate` is the HTTP view (decisions filtered out); the gRPC `Router` service streams both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.metrics import RouterMetrics
from prfaas.metrics.stages import StageMetrics
from prfaas.roles import Role
from prfaas.router.attempt import Attempt, FlowTimeouts, Retry
from prfaas.router.control import LongTermController, RecentArrivals, ShortTermController
from prfaas.router.generation_backend import (
    BackendError,
    GenerationBackend,
    GenerationEvent,
    GenerationFinished,
    GenerationRequest,
    NotReady,
    Overloaded,
    TokenChunk,
)
from prfaas.router.kv_footprint import KvFootprint
from prfaas.router.link_health import LinkHealth
from prfaas.router.policy import (
    LinkState,
    RouteDecision,
    RouteRequest,
    RoutingConfig,
    Target,
    WorkerSnapshot,
    missing_role,
    overflow_to_prfaas,
    route,
)
from prfaas.router.prefill_estimate import (
    observe_drain,
    predicted_prefill_s,
    predicted_wait_s,
    speed_measured,
)
from prfaas.router.prefix_move import move_prefix, prefix_to_move
from prfaas.router.registry import WorkerHandle, WorkerRegistry
from prfaas.router.timeline import RequestTimeline

log = logging.getLogger(__name__)
PREFILL_ROLES = (Role.PREFILL, Role.MIXED, Role.PRFAAS)


@dataclass(frozen=True)
class DispatchConfig:
    model_name: str = "prfaas"
    max_context: int = 4096
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    timeouts: FlowTimeouts = field(default_factory=FlowTimeouts)
    max_attempts: int = 3
    """Routing attempts per request (first try plus retries before any token)."""
    abort_timeout_s: float = 2.0
    """Deadline of each `Abort` RPC."""
    link_bytes_per_s: float = 125e6
    """Configured capacity of the PrfaaS -> PD link (topology link rate): the prior until the
    short-term controller has a measured one."""
    local_bytes_per_s: float = 1.25e9
    """Bandwidth assumed inside the PD cluster (PD-P -> PD-D)."""
    prefill_slack_s: float = 5.0
    """Fixed part of the remote-prefill deadline (connection setup, scheduling noise)."""
    prefill_deadline_factor: float = 3.0
    """Headroom multiplier on the estimated prefill + transfer time of a remote (PrfaaS)
    prefill, whose stall is what the deadline exists to catch (the link may be cut)."""
    local_prefill_deadline_factor: float = 10.0
    """The same for a prefill inside the PD cluster (PD-P): no cross-datacenter link to stall,
    a dead worker is caught by health checks, and a spurious retry re-queues a long prefill from
    scratch, so only a generous deadline."""
    default_prefill_tokens_per_s: float = 1000.0
    """Prefill speed assumed until a worker reports a measured one."""
    default_kv_bytes_per_token: float = 16384.0
    """KV bytes per prompt token assumed until a worker reports what it ships, or a transfer
    measures it (`kv_footprint.KvFootprint`)."""
    prefix_transfer: bool = True
    """Move a cache held in the other cluster before the request when the policy asks for it."""
    prefix_transfer_slack_s: float = 2.0
    """Fixed part of a prefix move's deadline; the rest is its bytes over the link, x factor."""
    max_inflight: int = 512
    """Admission cap: requests in flight at once; one more is refused with 429 + Retry-After."""
    retry_after_s: float = 1.0
    """What a refused client is told to wait before retrying."""
    max_prefill_wait_s: float = 30.0
    """Budget of a request's wait in a prefill queue: a request whose chosen prefill worker is
    predicted (`prefill_estimate`) to start it later is refused up front with 429 and a
    Retry-After of the excess, instead of queueing to fail or time out later."""


@dataclass
class _Inflight:
    attempt: Attempt | None = None
    # (worker, worker-level request id) pairs that may hold state for this request.
    holders: list[tuple[WorkerHandle, str]] = field(default_factory=list)


class Dispatcher(GenerationBackend):
    """Owns the in-flight table; the registry and controllers are shared with the control loops."""

    def __init__(
        self,
        registry: WorkerRegistry,
        short: ShortTermController,
        config: DispatchConfig | None = None,
        long: LongTermController | None = None,
        metrics: RouterMetrics | None = None,
        links: LinkHealth | None = None,
    ) -> None:
        self.registry = registry
        self.links = links
        self.short = short
        self.long = long
        self.config = config or DispatchConfig()
        self.metrics = metrics
        self.stages = StageMetrics(metrics.registry) if metrics is not None else None
        self.kv = KvFootprint(
            registry, self.config.routing.prfaas_cluster, self.config.default_kv_bytes_per_token
        )
        self.recent_arrivals = RecentArrivals()
        """The lengths routed lately, for the short-term law's feed-forward and raise cap."""
        self._inflight: dict[str, _Inflight] = {}
        self._reported_max_context: int | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def kv_bytes_per_token(self) -> float:
        """KV bytes per prompt token this deployment ships (`kv_footprint`)."""
        return self.kv.bytes_per_token

    @property
    def model_name(self) -> str:
        return self.config.model_name

    @property
    def max_context(self) -> int:
        """The workers' context limit (the smallest the healthy ones report; kept while none is
        healthy), or the configured one before any report (a preset's or config.json's)."""
        reported = self.registry.reported_max_context()
        if reported is not None:
            self._reported_max_context = reported
        return self._reported_max_context or self.config.max_context

    def ready(self) -> bool:
        """Some request can be placed: a local decode-capable worker is up, and a prefill-capable
        one locally or in the PrfaaS cluster (`policy.missing_role`). A down local prefill pool
        alone does not make the router unready while PrfaaS can prefill."""
        return missing_role(self.registry.snapshots(), self.config.routing) is None

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        async for item in self.generate_routed(request):
            if not isinstance(item, RouteDecision):
                yield item

    async def generate_routed(
        self, request: GenerationRequest
    ) -> AsyncGenerator[RouteDecision | TokenChunk | GenerationFinished, None]:
        """Decision(s) then events; a retry before the first token yields a new decision."""
        rid = request.request_id
        if len(self._inflight) >= self.config.max_inflight:
            raise Overloaded(
                self.config.retry_after_s,
                f"{len(self._inflight)} requests in flight (limit {self.config.max_inflight})",
            )
        inflight = self._inflight.setdefault(rid, _Inflight())
        timeline = RequestTimeline(rid, len(request.prompt_token_ids), self.stages)
        excluded: set[str] = set()
        force_local = False
        overloaded = False
        done = False
        error: str | None = "cancelled"
        try:
            for num_attempt in range(self.config.max_attempts):
                decision = self._route(request, excluded, force_local)
                timeline.routed(decision, num_attempt)
                yield decision
                wrid = f"{rid}.{num_attempt}"
                cached = await self._move_cache(request, decision, wrid)
                attempt = self._attempt(request, decision, wrid, cached)
                if attempt is None:
                    excluded.add(decision.prefill_worker or "")
                    continue
                inflight.attempt = attempt
                inflight.holders += [(w, attempt.worker_request_id) for w in attempt.participants]
                timeline.attempt_started(attempt)
                failure: str | None = "cancelled"
                try:
                    async for item in attempt.run():
                        if isinstance(item, TokenChunk):
                            timeline.token()
                        else:
                            # Done before the finish is yielded: an HTTP consumer closes this
                            # generator as soon as it has the finish, so nothing after the
                            # `yield` runs (learning never did, and every finished request got
                            # Aborts as if it had failed).
                            timeline.finished(attempt, item.finish_reason)
                            item = item.with_prefill_cluster(attempt.prefill.cluster)
                            done, failure, error = True, None, None
                            self._learn(attempt)
                        yield item
                    done, failure, error = True, None, None
                    return
                except Retry as exc:
                    failure = str(exc)
                    overloaded = exc.overloaded
                    log.log(logging.INFO if overloaded else logging.WARNING,
                            "request %s attempt %d failed, retrying: %s",
                            rid, num_attempt + 1, exc)  # fmt: skip
                    if exc.worker_id:
                        excluded.add(exc.worker_id)
                    force_local = force_local or exc.remote_prefill_failed
                    if exc.remote_prefill_failed and self.links is not None:
                        self.links.report_failure(decision.decode_worker, str(exc))
                    self._spawn(self._abort_on(attempt.worker_request_id, attempt.workers))
                except Exception as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                    raise
                finally:
                    attempt.close()
                    timeline.attempt_over(attempt, failure)
            if overloaded:  # the last decode worker tried was full: overload (429), not a fault
                raise Overloaded(self.config.retry_after_s, f"request {rid}: {failure}")
            raise BackendError(f"request {rid} failed after {self.config.max_attempts} attempts")
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            timeline.end(error)
            self._inflight.pop(rid, None)
            if not done:
                for worker, worker_rid in inflight.holders:
                    self._spawn(self._abort_on(worker_rid, [worker]))

    async def abort(self, request_id: str) -> None:
        inflight = self._inflight.get(request_id)
        if inflight is None:
            return
        if inflight.attempt is not None:
            inflight.attempt.close()
        await asyncio.gather(*(self._abort_on(wrid, [w]) for w, wrid in inflight.holders))

    async def close(self) -> None:
        """Wait for outstanding Abort RPCs (called at shutdown)."""
        await asyncio.gather(*self._background, return_exceptions=True)

    def _route(
        self, request: GenerationRequest, excluded: set[str], force_local: bool
    ) -> RouteDecision:
        rc = self.config.routing
        snaps = [
            self._with_wait(s) for s in self.registry.snapshots()
            if s.worker_id not in excluded and not (force_local and s.cluster == rc.prfaas_cluster)
        ]  # fmt: skip
        match = self.registry.index.match_tokens(request.prompt_token_ids)
        link = LinkState(up=True, bandwidth_scarce=self.short.scarce)
        req = RouteRequest(len(request.prompt_token_ids), request.sampling.max_tokens)
        decision = route(req, snaps, match, link, self.short.threshold, rc, self.short.base)
        if decision.target is Target.PRFAAS and not self._link_usable(decision.decode_worker):
            # KV cannot reach that decode worker now (link_health.py): place as if PrfaaS were down.
            link = LinkState(up=False, bandwidth_scarce=self.short.scarce)
            decision = route(req, snaps, match, link, self.short.threshold, rc, self.short.base)
        if decision.target is None:
            # 503 when a needed role has no worker at all; 429 when workers exist but are full,
            # or when the ones left after failed attempts (excluded here) are all it had: a retry
            # that runs out of workers is overload, not a missing role.
            missing = missing_role(self.registry.snapshots(), rc)
            if missing is not None:
                raise NotReady(f"no healthy {missing} worker can serve this request")
            log.info("request %s refused (429): no worker has capacity (%s)",
                     request.request_id, decision.reason.value)  # fmt: skip
            raise Overloaded(self.config.retry_after_s, "no worker has capacity for this request")
        if decision.target is Target.LOCAL and self._over_wait_budget(decision) is not None:
            # Queue a long wait behind the link on PrfaaS rather than refuse it here (issue 12).
            offload = overflow_to_prfaas(req, snaps, match, link, self.short.threshold, rc)
            usable = offload is not None and self._link_usable(offload.decode_worker)
            if offload is not None and usable and self._over_wait_budget(offload) is None:
                log.info("request %s: local prefill on %s over its wait budget, offloaded",
                         request.request_id, decision.prefill_worker)  # fmt: skip
                decision = offload
        self._check_prefill_wait(decision, request.request_id)
        self._record(request.request_id, decision)
        return decision

    def _over_wait_budget(self, d: RouteDecision) -> float | None:
        """The predicted wait on the decision's prefill worker when it exceeds the budget."""
        prefill = self.registry.get(d.prefill_worker or "")
        if prefill is None:
            return None
        wait = predicted_wait_s(prefill, self.config.default_prefill_tokens_per_s)
        # Only a measured speed backs a prediction (see _check_prefill_wait).
        over = wait > self.config.max_prefill_wait_s and speed_measured(prefill)
        return wait if over else None

    def _with_wait(self, snap: WorkerSnapshot) -> WorkerSnapshot:
        """The snapshot with this router's predicted prefill wait on that worker (placement
        balances by it, policy._pick)."""
        handle = self.registry.get(snap.worker_id)
        if handle is None or snap.role not in PREFILL_ROLES:
            return snap
        wait = predicted_wait_s(handle, self.config.default_prefill_tokens_per_s)
        return replace(snap, predicted_wait_s=wait)

    def _check_prefill_wait(self, d: RouteDecision, rid: str) -> None:
        """Bounded prefill queues: 429 + Retry-After when the wait would exceed its budget."""
        prefill = self.registry.get(d.prefill_worker or "")
        if prefill is None:
            return
        cfg = self.config
        wait = predicted_wait_s(prefill, cfg.default_prefill_tokens_per_s)
        # Refused only on a measured speed: a cold worker's queue at the default speed (1000
        # tokens/s, far slower than most) refused requests at the start of every experiment.
        if wait > cfg.max_prefill_wait_s and speed_measured(prefill):
            log.info("request %s refused (429): predicted wait %.1f s on %s (%s, t=%.0f)", rid,
                     wait, prefill.worker_id, d.reason.value, d.threshold)  # fmt: skip
            raise Overloaded(
                max(cfg.retry_after_s, wait - cfg.max_prefill_wait_s),
                f"prefill queue on {prefill.worker_id}: predicted wait {wait:.1f}s exceeds "
                f"the {cfg.max_prefill_wait_s:.1f}s budget",
            )

    def _link_usable(self, decode_worker: str | None) -> bool:
        return self.links is None or self.links.usable(decode_worker)

    def _record(self, rid: str, d: RouteDecision) -> None:
        rc = self.config.routing
        route_name = "offload" if d.target is Target.PRFAAS else "local"
        cluster = rc.prfaas_cluster if d.target is Target.PRFAAS else rc.local_cluster
        log.info("request %s -> %s (%s) prefill=%s decode=%s cached=%d incremental=%d t=%.0f",
                 rid, route_name, d.reason, d.prefill_worker, d.decode_worker, d.cached_tokens,
                 d.incremental_tokens, d.threshold)  # fmt: skip
        if self.metrics is not None:
            self.metrics.record_routing(rc.policy, route_name, d.reason.value, cluster,
                                        d.cached_tokens)  # fmt: skip
        self.recent_arrivals.observe(time.monotonic(), d.incremental_tokens)
        if self.long is not None:
            self.long.observe_request(time.monotonic(), d.incremental_tokens)

    async def _move_cache(self, request: GenerationRequest, d: RouteDecision, wrid: str) -> int:
        """Run the decision's cross-cluster prefix move, if any; returns the cached tokens the
        attempt may count on. Never raises (except cancellation): a failed move only costs reuse."""
        if not d.cross_cluster_transfer or not d.cache_source_worker:
            return d.cached_tokens
        cfg = self.config
        holder = self.registry.get(d.cache_source_worker)
        target = self.registry.get(d.prefill_worker or "")
        if not cfg.prefix_transfer or holder is None or target is None:
            self._record_move(wrid, "skipped", 0, "disabled or worker gone")
            return 0
        bs = self.registry.index.block_size
        tokens = prefix_to_move(request.prompt_token_ids, d.cached_tokens, bs)
        timeout = cfg.prefix_transfer_slack_s + cfg.prefill_deadline_factor * len(
            tokens
        ) * self.kv_bytes_per_token / max(self.link_capacity, 1.0)
        started = time.monotonic()
        move = await move_prefix(target, holder, tokens, bs, timeout, wrid)
        self._record_move(wrid, move.outcome, move.num_tokens,
                          f"{holder.worker_id} -> {target.worker_id} {move.detail}",
                          move.bytes_sent, time.monotonic() - started)  # fmt: skip
        return min(d.cached_tokens, move.num_tokens)

    def _record_move(
        self, wrid: str, outcome: str, num_tokens: int, detail: str, num_bytes: int = 0,
        seconds: float = 0.0,
    ) -> None:  # fmt: skip
        log.log(logging.WARNING if outcome == "failed" else logging.INFO,
                "request %s prefix move %s (%d tokens, %d bytes, %.3f s): %s", wrid, outcome,
                num_tokens, num_bytes, seconds, detail)  # fmt: skip
        if self.metrics is not None:
            self.metrics.record_prefix_transfer(outcome, num_tokens, num_bytes, seconds)

    def _attempt(
        self, request: GenerationRequest, d: RouteDecision, worker_request_id: str, cached: int
    ) -> Attempt | None:
        """The attempt for a decision; None when a chosen worker left the registry meanwhile."""
        prefill = self.registry.get(d.prefill_worker or "")
        decode = self.registry.get(d.decode_worker or "")
        if prefill is None or decode is None:
            return None
        # incremental_tokens is the attempt's share of the worker's queue accounting (it was
        # never set before, so queued tokens always read 0 and deadlines ignored the queue).
        return Attempt(request, prefill, decode, self.config.timeouts,
                       self.prefill_deadline(prefill, d), cached,
                       worker_request_id, incremental_tokens=d.incremental_tokens)  # fmt: skip

    def prefill_deadline(self, prefill: WorkerHandle, d: RouteDecision) -> float:
        """Seconds the prefill call may take: the predicted wait + compute (the queue ahead of it
        on that worker at its learned drain rate, `prefill_estimate`), plus the time its KV takes
        over the link, times a headroom factor. The link carries the KV already committed to it
        first (the offloads in flight and the senders' backlog, `KvFootprint.ahead_on_link`):
        the transfer time is the larger of (ahead + own bytes) / capacity and own bytes over the
        bandwidth left (capacity · (1 - u)). For a prefill inside the PD cluster this is only a
        check period (`flows.Attempt.prefill_limit_s`)."""
        cfg = self.config
        # Everything this router already queued on the worker runs first (FCFS), then this one.
        compute_s = predicted_prefill_s(
            prefill, d.incremental_tokens, cfg.default_prefill_tokens_per_s
        )
        own = self.kv.bytes_for(d.cached_tokens + d.incremental_tokens)
        if prefill.kind == "prefill":
            capacity = self.link_capacity
            left = capacity * max(1.0 - self.short.utilization, 0.1)
            transfer_s = max(own / left, (self.kv.ahead_on_link() + own) / capacity)
        else:
            transfer_s = own / cfg.local_bytes_per_s
        factor = (
            cfg.prefill_deadline_factor
            if prefill.kind == "prefill"
            else cfg.local_prefill_deadline_factor
        )
        return cfg.prefill_slack_s + factor * (compute_s + transfer_s)

    @property
    def link_capacity(self) -> float:
        """The link's measured capacity (short-term controller), the configured rate until then."""
        return self.short.capacity_bytes_per_s or self.config.link_bytes_per_s

    def _learn(self, attempt: Attempt) -> None:
        """Learn from a completed attempt: the prefill worker's drain rate, the KV bytes per
        token (when no worker reports it) and, for the planner, its measured prefill time."""
        res = attempt.prefill_result
        drained = attempt.queued_ahead_tokens + attempt.incremental_tokens
        worker_s = res.queue_seconds + res.prefill_seconds if res is not None else 0.0
        # The worker's own queue + compute seconds leave the link out; else time to first token.
        seconds = worker_s if worker_s > 0 else attempt.first_token_after_s
        if seconds is not None:
            observe_drain(attempt.prefill, drained, seconds)
        if res is not None:
            self.kv.observe_transfer(res.bytes_sent, res.num_prompt_tokens)
            if self.long is not None:
                cluster = "prfaas" if attempt.prefill.kind == "prefill" else "pd"
                uncached = res.num_prompt_tokens - res.num_cached_tokens
                self.long.observe_prefill(time.monotonic(), cluster, uncached, res.prefill_seconds)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abort_on(self, rid: str, workers: list[WorkerHandle]) -> None:
        async def one(w: WorkerHandle) -> None:
            try:
                await w.stub.Abort(worker_pb2.AbortRequest(request_id=rid),
                                   timeout=self.config.abort_timeout_s)  # fmt: skip
            except grpc.aio.AioRpcError as exc:
                log.debug("abort %s on %s: %s", rid, w.worker_id, exc.code())

        await asyncio.gather(*(one(w) for w in workers))
