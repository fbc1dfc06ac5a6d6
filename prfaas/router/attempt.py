"""One execution attempt of a routed request over gRPC: the local flow and the two-worker flow.

Local flow (prefill worker == decode worker, a `mixed` PD worker): one `Worker.Generate`
without a KV source; its events are relayed.
Two-worker flow (PrfaaS -> PD-D offload, or PD-P -> PD-D inside the local cluster):
  1. the handshake (router/two_worker_handshake.py): `D.Generate(kv_source)` and, at the same
     time, `P.Prefill` towards D's KV receiver with the prefill deadline; D's `Admitted` within
     `admit_timeout_s` (a prefill that fails meanwhile fails the attempt, and an admission that
     fails or times out cancels the prefill);
  2. relay D's events while watching the prefill call; the first token arrives through D.
Every wait has a deadline: the prefill deadline until the first token, then `token_timeout_s`
between events. A prefill inside the PD cluster (no link that can stall) is not given up on while
its worker stays healthy: its deadline is a check, re-armed while the registry still sees the
worker alive, up to `FlowTimeouts.local_prefill_max_s` — a queue longer than predicted must not
re-queue a whole prefill elsewhere (a dead worker is caught by the registry instead). A failure before any token was yielded raises `Retry` (the dispatcher re-routes);
after a token it raises `BackendError`. The caller owns the `Attempt` and calls `close()` in a
`finally`, which cancels both calls; Abort RPCs are the dispatcher's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2
from prfaas.router.generation_backend import (
    BackendError,
    GenerationFinished,
    GenerationRequest,
    TokenChunk,
    Usage,
)
from prfaas.router.registry import WorkerHandle
from prfaas.router.two_worker_handshake import TwoWorkerHandshake
from prfaas.sampling import FinishReason, SamplingParams

RETRYABLE_WORKER_ERRORS = frozenset({"kv_transfer_failed", "overloaded", "aborted", "draining"})
"""`WorkerError.code`s that mean "try elsewhere" when no token was sent yet."""


class Retry(Exception):
    """The attempt failed before any token reached the client; re-route without `worker_id`.
    `remote_prefill_failed` asks for the local fallback (no PrfaaS); `overloaded`: the worker
    refused for capacity (its seats are full, worker/seat_line.py), not for a fault."""

    def __init__(self, message: str, worker_id: str | None, remote_prefill_failed: bool = False,
                 overloaded: bool = False):  # fmt: skip
        super().__init__(message)
        self.worker_id = worker_id
        self.remote_prefill_failed = remote_prefill_failed
        self.overloaded = overloaded


@dataclass(frozen=True)
class FlowTimeouts:
    admit_s: float = 30.0
    """Until D (or a local worker) sends `Admitted`."""
    token_s: float = 60.0
    """Longest gap between two events once the first token arrived (or after a local admit)."""
    finish_grace_s: float = 0.5
    """How long a finished request waits for its prefill call's result (for statistics)."""
    local_prefill_max_s: float = 600.0
    """Longest wait for the first token of a prefill inside the PD cluster whose worker stays
    healthy (its predicted deadline is only re-checked until then)."""


def to_sampling_params(s: SamplingParams) -> common_pb2.SamplingParams:
    stops = [common_pb2.TokenIds(ids=[t]) for t in s.stop_token_ids]
    stops += [common_pb2.TokenIds(ids=list(seq)) for seq in s.stop_sequences]
    return common_pb2.SamplingParams(
        temperature=s.temperature, top_p=s.top_p, top_k=max(s.top_k, 0),
        seed=s.seed or 0, has_seed=s.seed is not None, max_tokens=s.max_tokens,
        ignore_eos=s.ignore_eos, stop_token_ids=stops,
    )  # fmt: skip


_FINISH = {
    common_pb2.FINISH_REASON_STOP: FinishReason.STOP,
    common_pb2.FINISH_REASON_LENGTH: FinishReason.LENGTH,
}


@dataclass
class Attempt:
    """The live calls of one attempt; `workers` is everyone who may hold request state."""

    request: GenerationRequest
    prefill: WorkerHandle
    decode: WorkerHandle
    timeouts: FlowTimeouts
    prefill_deadline_s: float = 60.0
    """Deadline of the remote prefill call, derived from expected bytes and bandwidth."""
    cached_tokens_hint: int = 0
    # The id workers see: unique per attempt, so a late Abort or cleanup of a failed attempt can
    # never hit the retry of the same client request on the same worker.
    worker_request_id: str = ""
    incremental_tokens: int = 0
    """Uncached prompt tokens the prefill worker computes (its queue accounting)."""
    num_tokens_sent: int = 0
    prefill_result: worker_pb2.PrefillResult | None = None
    queued_ahead_tokens: int = 0
    """Uncached tokens this router had queued on the prefill worker when this attempt joined."""
    started_s: float = 0.0
    admitted_after_s: float | None = None
    """Seconds from the start of the attempt to the decode worker's `Admitted`."""
    first_token_after_s: float | None = None
    """Seconds from the start of the attempt to its first token (None: none yet)."""
    trace_metadata: tuple[tuple[str, str], ...] = ()
    """The attempt span's trace context, sent to both workers (prfaas/tracing.py)."""
    _call: grpc.aio.UnaryStreamCall | None = None
    _prefill_task: asyncio.Task[worker_pb2.PrefillResult] | None = None
    _handshake: TwoWorkerHandshake | None = None
    _prefill_due: float | None = None
    """Loop time by which the prefill call must have returned: `prefill_limit_s` after D admitted
    (the call's own gRPC deadline also covers the admission wait, since it starts with it)."""
    _read: asyncio.Task[object] | None = None
    workers: list[WorkerHandle] = field(default_factory=list)
    _prefill_counted: bool = False
    _decode_counted: bool = False

    @property
    def participants(self) -> list[WorkerHandle]:
        """The decode worker, and the prefill worker when it is a different one."""
        return [self.decode] + ([self.prefill] if self.two_worker else [])

    @property
    def two_worker(self) -> bool:
        return self.prefill.worker_id != self.decode.worker_id

    def _count(self, prefill: int, decode: int) -> None:
        """Adjust the handles' in-flight counts (+1 at start; -1 when a phase ends)."""
        self.prefill.inflight_prefills += prefill
        self.prefill.inflight_prefill_tokens += prefill * self.incremental_tokens
        if prefill > 0:
            self.prefill.placed_prefills[id(self)] = (time.monotonic(), self.incremental_tokens)
        elif prefill < 0:
            self.prefill.placed_prefills.pop(id(self), None)
        if decode:
            self.decode.seat_change(decode)

    @property
    def local_prefill(self) -> bool:
        """The prefill runs inside the PD cluster (PD-P or the mixed worker itself)."""
        return self.prefill.kind != "prefill"

    @property
    def prefill_limit_s(self) -> float:
        """The hard limit on the prefill call (and on D's wait for the KV)."""
        if self.local_prefill:
            return max(self.prefill_deadline_s, self.timeouts.local_prefill_max_s)
        return self.prefill_deadline_s

    def _prefill_over(self) -> None:
        """The KV is complete at the decode worker (first token): the prefill leaves the prefill
        worker's queue and the request takes its decode seat, as the engine seats it (a seat is
        not held while the prefill still waits in a queue)."""
        if self._prefill_counted:
            self.first_token_after_s = asyncio.get_running_loop().time() - self.started_s
            self._prefill_counted = False
            self._count(-1, 0)
            self.decode.pending_decodes -= 1
            self._decode_counted = True
            self._count(0, 1)

    def close(self) -> None:
        """Cancel every call of this attempt (idempotent; the workers abort on cancellation)."""
        if self._prefill_counted:
            self._prefill_counted = False
            self._count(-1, 0)
            self.decode.pending_decodes -= 1
        if self._decode_counted:
            self._decode_counted = False
            self._count(0, -1)
        for task in (self._read, self._prefill_task):
            if task is not None and not task.done():
                task.cancel()
        if self._call is not None:
            self._call.cancel()

    async def run(self) -> AsyncIterator[TokenChunk | GenerationFinished]:
        req = self.request
        gen = worker_pb2.GenerateRequest(
            request_id=self.worker_request_id or req.request_id,
            prompt_ids=list(req.prompt_token_ids),
            sampling=to_sampling_params(req.sampling),
        )  # fmt: skip
        self.workers = [self.decode] + ([self.prefill] if self.two_worker else [])
        self.started_s = asyncio.get_running_loop().time()
        self.queued_ahead_tokens = self.prefill.inflight_prefill_tokens
        self._count(1, 0)
        self.decode.pending_decodes += 1
        self._prefill_counted = True
        if self.two_worker:
            self._handshake = handshake = TwoWorkerHandshake(
                self.decode.stub, self.prefill.stub, gen, self.prefill.worker_id,
                self.decode.kv_destination(self.prefill.kind),
                kv_deadline_s=self.prefill_limit_s + self.timeouts.admit_s,
                # The prefill starts with the admission, which may take `admit_s` first.
                prefill_timeout_s=self.prefill_limit_s + self.timeouts.admit_s,
                metadata=self.trace_metadata,
            )  # fmt: skip
            admitted = await handshake.open(self._admission)
            self._prefill_task = handshake.prefill_call
        else:
            call = self.decode.stub.Generate(gen, metadata=self.trace_metadata)
            admitted = await self._admission(call)
        if admitted.WhichOneof("event") != "admitted":
            self._fail_event(admitted)
        now = asyncio.get_running_loop().time()
        self.admitted_after_s = now - self.started_s
        if self._prefill_task is not None:
            self._prefill_due = now + self.prefill_limit_s
        cached = self.cached_tokens_hint if self.two_worker else admitted.admitted.num_cached_tokens
        async for item in self._relay(cached):
            yield item

    async def _admission(self, call: grpc.aio.UnaryStreamCall) -> worker_pb2.GenerateEvent:
        """D's first event on `call` (`Admitted` unless it failed), within `admit_s`; a two-worker
        attempt watches its prefill, started with the admission, meanwhile."""
        self._call = call
        if self._handshake is not None:
            self._prefill_task = self._handshake.prefill_call
        return await self._next_event(self.timeouts.admit_s, "admission")

    async def _relay(self, cached: int) -> AsyncIterator[TokenChunk | GenerationFinished]:
        while True:
            waiting_prefill = self.num_tokens_sent == 0 and (
                self._prefill_task is not None or self.local_prefill
            )
            timeout = self.timeouts.token_s
            if waiting_prefill:
                timeout += self.prefill_deadline_s
            event = await self._next_event(timeout, "tokens")
            kind = event.WhichOneof("event")
            if kind == "tokens":
                if not event.tokens.ids:
                    continue
                first = self.num_tokens_sent == 0
                if first:
                    self._prefill_over()
                self.num_tokens_sent += len(event.tokens.ids)
                yield TokenChunk(tuple(event.tokens.ids), cached if first else None)
            elif kind == "finished":
                yield await self._finished(event.finished, cached)
                return
            else:
                self._fail_event(event)

    async def _finished(self, fin: worker_pb2.Finished, cached: int) -> GenerationFinished:
        reason = _FINISH.get(fin.reason)
        if reason is None:
            raise BackendError(f"worker {self.decode.worker_id} ended the request ({fin.reason})")
        task = self._prefill_task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), self.timeouts.finish_grace_s)
            if task.done() and not task.cancelled() and task.exception() is None:
                self.prefill_result = task.result()
                cached = max(cached, self.prefill_result.num_cached_tokens)
        u = fin.usage
        prompt = u.prompt_tokens or len(self.request.prompt_token_ids)
        completion = u.completion_tokens or self.num_tokens_sent
        return GenerationFinished(reason, Usage(prompt, completion, max(cached, u.cached_tokens)))

    def _fail_event(self, event: worker_pb2.GenerateEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "error":
            code, msg = event.error.code, event.error.message
            if self.num_tokens_sent == 0 and code in RETRYABLE_WORKER_ERRORS:
                remote = code == "kv_transfer_failed" and self.prefill.kind == "prefill"
                culprit = self.prefill if code == "kv_transfer_failed" else self.decode
                raise Retry(f"{code}: {msg}", culprit.worker_id, remote, code == "overloaded")
            raise BackendError(f"worker {self.decode.worker_id} failed: {code}: {msg}")
        raise BackendError(f"worker {self.decode.worker_id} sent {kind} out of order")

    async def _next_event(self, timeout: float, what: str) -> worker_pb2.GenerateEvent:
        """The next event of D's stream, while watching the prefill call; raises on any failure."""
        assert self._call is not None
        if self._read is None:
            self._read = asyncio.ensure_future(self._call.read())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            watch: set[asyncio.Future[Any]] = {self._read}
            wake = deadline
            if self._prefill_task is not None and not self._prefill_task.done():
                watch.add(self._prefill_task)
                if self._prefill_due is not None and self.num_tokens_sent == 0:
                    wake = min(wake, self._prefill_due)
            done, _ = await asyncio.wait(watch, timeout=max(wake - loop.time(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if not done and loop.time() < deadline:
                self._prefill_overdue()
                continue
            if not done:
                if what == "tokens" and self._local_prefill_alive():
                    deadline = loop.time() + timeout  # late, not lost: check again
                    continue
                # A local prefill whose worker the registry took out is the culprit, not D.
                dead_prefill = self.local_prefill and not self.prefill.healthy
                culprit = (
                    self.prefill if dead_prefill and self.num_tokens_sent == 0 else self.decode
                )
                # An admission that timed out is the decode worker's (its prefill runs meanwhile).
                self._lost(f"no {what} from {self.decode.worker_id} within {timeout:.1f}s",
                           culprit, stalled=what != "admission")  # fmt: skip
            if self._prefill_task in done:
                self._check_prefill()
            if self._read in done:
                break
        read, self._read = self._read, None
        try:
            event = read.result()
        except grpc.aio.AioRpcError as exc:
            self._lost(f"{self.decode.worker_id}: {exc.code().name} {exc.details()}", self.decode)
        if not isinstance(event, worker_pb2.GenerateEvent):  # grpc.aio.EOF
            self._lost(f"{self.decode.worker_id} closed the stream without finishing", self.decode)
        return event

    def _local_prefill_alive(self) -> bool:
        """Still waiting for the first token of a prefill inside the PD cluster whose workers
        the registry sees alive, within `local_prefill_max_s`: keep waiting."""
        if self.num_tokens_sent > 0 or not self.local_prefill:
            return False
        waited = asyncio.get_running_loop().time() - self.started_s
        alive = self.prefill.healthy and self.decode.healthy
        return alive and waited < self.timeouts.local_prefill_max_s

    def _prefill_overdue(self) -> None:
        """The prefill call passed `prefill_limit_s` after the admission without the first token:
        it failed, as its own deadline would have failed it had it started after the admission."""
        if self._prefill_due is None or self.num_tokens_sent > 0:
            return
        if asyncio.get_running_loop().time() >= self._prefill_due:
            raise Retry(f"prefill on {self.prefill.worker_id} failed: DEADLINE_EXCEEDED",
                        self.prefill.worker_id, self.prefill.kind == "prefill")  # fmt: skip

    def _check_prefill(self) -> None:
        task = self._prefill_task
        assert task is not None
        exc = task.exception()
        if exc is None:
            self.prefill_result = task.result()
            return
        if self.num_tokens_sent > 0:
            return  # the cache already arrived; D's stream decides the outcome
        detail = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
        raise Retry(f"prefill on {self.prefill.worker_id} failed: {detail}",
                    self.prefill.worker_id, self.prefill.kind == "prefill")  # fmt: skip

    def _lost(self, message: str, culprit: WorkerHandle, stalled: bool = False) -> NoReturn:
        if self.num_tokens_sent > 0:
            raise BackendError(message)
        remote = self.prefill.kind == "prefill" and self.prefill_result is None
        if stalled and self._prefill_task is not None and remote:
            # Still no first token past the prefill deadline: the remote prefill stalled.
            raise Retry(message, self.prefill.worker_id, True)
        raise Retry(message, culprit.worker_id)
