"""The `Worker` gRPC service as a PD worker serves it: Generate (local or decode-only), Prefill
(PD-P), roles with draining.

Role rules (what each role accepts):
- mixed:   Generate (local prefill + decode, or decode-only), Prefill.
- prefill: Prefill only (PD-P ships caches to decode-role workers).
- decode:  Generate with a KV source only (PD-D).
Every role serves ImportPrefix / ExportPrefix (cross-worker prefix moves, prfaas/worker/prefix_rpcs.py).
A role change refuses new work, waits for in-flight requests to finish (drain), then switches.
PlannerLease: the smallest-id PD worker arbitrates which router's planner may change roles
(prfaas/worker/planner_lease.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator

import grpc

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.request import Request, RequestKind
from prfaas.roles import PD_ROLES
from prfaas.worker import generate_flow as flow
from prfaas.worker import spans
from prfaas.worker.options import PDWorkerOptions
from prfaas.worker.planner_lease import PlannerLease
from prfaas.worker.runtime import RequestAborted, WorkerRuntime
from prfaas.worker.seat_line import SeatLine
from prfaas.worker.shared_rpcs import CommonRpcs
from prfaas.worker.wire_inputs import finish_reason, inputs_from_proto

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 120.0


# Stage events of the `generate` span (prfaas/worker/spans.py), by flow event.
_SPAN_EVENT = {
    flow.Admitted: "admitted",
    flow.KvReceived: "kv_complete",
    flow.Tokens: "first_token",
    flow.Finished: "finished",
}


def _error(code: str, message: str) -> worker_pb2.GenerateEvent:
    return worker_pb2.GenerateEvent(error=worker_pb2.WorkerError(code=code, message=message))


class PDWorkerServicer(CommonRpcs, worker_pb2_grpc.WorkerServicer):
    def __init__(self, runtime: WorkerRuntime, role: str) -> None:
        if role not in PD_ROLES:
            raise ValueError(f"role must be one of {PD_ROLES}, got {role!r}")
        self.runtime = runtime
        self.role = role
        self._role_lock = asyncio.Lock()
        # Arbitrated here when this is the smallest-id PD worker a router sees (planner_lease.py).
        self.planner_lease = PlannerLease()

    @functools.cached_property
    def seats(self) -> SeatLine:
        """Bounds decode-only admissions (refused past the seats, retryable: worker/seat_line.py)."""
        options = self.runtime.options
        slack = options.decode_admission_slack if isinstance(options, PDWorkerOptions) else 0
        return SeatLine(options.max_num_seqs, slack)

    def refuse_reason(self, rpc: str, decode_only: bool = False) -> str | None:
        if self.draining:
            return f"worker {self.runtime.worker_id} is draining for a role change"
        if rpc == "Prefill" and self.role == "decode":
            return "decode-role worker does not prefill"
        if rpc == "Generate" and self.role == "prefill":
            return "prefill-role worker does not decode"
        if rpc == "Generate" and self.role == "decode" and not decode_only:
            return "decode-role worker only decodes requests whose KV arrives from a prefill worker"
        return None

    async def Generate(  # noqa: N802 (gRPC method name)
        self, request: worker_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb2.GenerateEvent]:
        rt = self.runtime
        decode_only = request.HasField("kv_source")
        refusal = self.refuse_reason("Generate", decode_only)
        if refusal:
            yield _error("unavailable", refusal)
            return
        if not request.prompt_ids:
            yield _error("invalid_argument", "empty prompt")
            return
        if len(request.prompt_ids) >= rt.max_context:
            yield _error(
                "context_too_long",
                f"prompt of {len(request.prompt_ids)} tokens exceeds the context limit of {rt.max_context}",
            )
            return
        try:
            prompt, sampling = inputs_from_proto(
                request.prompt_ids, request.sampling, rt.backend.prompt_vocab_size
            )
            req = Request(
                request.request_id,
                prompt,
                sampling,
                kind=RequestKind.DECODE_ONLY if decode_only else RequestKind.FULL,
                eos_token_id=None if sampling.ignore_eos else rt.eos_token_id,
            )
        except ValueError as exc:
            yield _error("invalid_argument", str(exc))
            return
        source = None
        if decode_only:
            src = request.kv_source
            source = flow.KvSourceSpec(src.transfer_id, src.sender_id, src.deadline_seconds or 60.0)
        events = flow.generate(
            rt.compute,
            req,
            receiver=rt.receiver,
            source=source,
            kv_compression=rt.options.kv_compression,
            seats=self.seats,
        )
        span = spans.start_span("generate", context, rt.worker_id, request.request_id)
        first_token = True
        try:
            async for event in rt.stream_abortable(request.request_id, events):
                if not isinstance(event, flow.Tokens) or first_token:
                    span.add_event(_SPAN_EVENT.get(type(event), "error"))
                    first_token = first_token and not isinstance(event, flow.Tokens)
                if isinstance(event, flow.Admitted):
                    yield worker_pb2.GenerateEvent(
                        admitted=worker_pb2.Admitted(num_cached_tokens=event.num_cached_tokens)
                    )
                elif isinstance(event, flow.Tokens):
                    rt.counters.decode_tokens += len(event.ids)
                    rt.worker_metrics.record_tokens(rt.worker_id, 0, len(event.ids))
                    yield worker_pb2.GenerateEvent(tokens=worker_pb2.TokenChunk(ids=event.ids))
                elif isinstance(event, flow.KvReceived):
                    rt.record_received(src.sender_id or "kv", event.num_bytes, event.seconds)
                elif isinstance(event, flow.Finished):
                    if not decode_only:
                        rt.counters.prefill_lengths.record(
                            event.prompt_tokens - event.cached_tokens
                        )
                        rt.worker_metrics.record_prefix_lookup(
                            rt.worker_id, event.prompt_tokens, event.cached_tokens
                        )
                        rt.worker_metrics.record_tokens(
                            rt.worker_id, event.prompt_tokens - event.cached_tokens, 0
                        )
                    yield worker_pb2.GenerateEvent(
                        finished=worker_pb2.Finished(
                            reason=finish_reason(event.status),
                            usage=common_pb2.Usage(
                                prompt_tokens=event.prompt_tokens,
                                completion_tokens=event.completion_tokens,
                                cached_tokens=event.cached_tokens,
                            ),
                            ttft_seconds=event.ttft_seconds,
                        )
                    )
                else:
                    if event.code == "kv_transfer_failed":
                        rt.transfer_metrics.record_failure(src.sender_id or "kv", "receive")
                    yield _error(event.code, event.message)
        except ValueError as exc:
            yield _error("duplicate", str(exc))
        except RequestAborted:
            yield _error("aborted", f"request {request.request_id} was aborted")
        finally:
            span.end()

    async def PlannerLease(  # noqa: N802
        self, request: worker_pb2.PlannerLeaseRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.PlannerLeaseResponse:
        lease = self.planner_lease
        if request.release:
            answer = lease.release(request.holder)
        else:
            try:
                answer = lease.request(request.holder, request.ttl_s)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return worker_pb2.PlannerLeaseResponse(
            granted=answer.granted, holder=answer.holder, remaining_s=answer.remaining_s
        )

    async def SetRole(  # noqa: N802
        self, request: worker_pb2.SetRoleRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.SetRoleResponse:
        if request.role not in PD_ROLES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"role must be one of {PD_ROLES}")
        async with self._role_lock:
            previous = self.role
            if request.role != previous:
                self.draining = True
                try:
                    deadline = time.monotonic() + DRAIN_TIMEOUT_S
                    while self.runtime.active and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    if self.runtime.active:
                        await context.abort(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"{len(self.runtime.active)} requests still in flight after drain timeout",
                        )
                    self.role = request.role
                    log.info("role %s -> %s", previous, self.role)
                finally:
                    self.draining = False
            return worker_pb2.SetRoleResponse(previous_role=previous, role=self.role)
