"""`Worker` RPCs both worker kinds serve identically: Prefill, Abort, GetLoad, StreamCacheEvents,
and (from `PrefixRpcs`) ImportPrefix / ExportPrefix.

A mixin over a `WorkerRuntime`; the only module besides the services that touches generated protos.
Each worker kind's servicer adds the rest (prfaas/pd_worker/service.py, prfaas/prefill_worker/service.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.request import Request, RequestKind
from prfaas.worker.prefill_flow import PrefillFailed, prefill_and_ship
from prfaas.worker.prefix_rpcs import PrefixRpcs
from prfaas.worker.runtime import RequestAborted, WorkerRuntime
from prfaas.worker.spans import record_prefill
from prfaas.worker.wire_inputs import inputs_from_proto

log = logging.getLogger(__name__)


class CommonRpcs(PrefixRpcs):
    runtime: WorkerRuntime
    role: str
    # True while a role change waits for in-flight work: new work is refused.
    draining: bool = False
    # True once the process was told to stop (serve_worker's drain): reported as draining so
    # routers place nothing new here, while work that still arrives is served, not refused.
    stopping: bool = False

    def refuse_reason(self, rpc: str) -> str | None:
        """Why this worker will not take a new `rpc` now (draining, wrong role); None: accept."""
        return None

    async def Prefill(  # noqa: N802 (gRPC method name)
        self, request: worker_pb2.PrefillRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.PrefillResult:
        rt = self.runtime
        arrived = time.monotonic()
        refusal = self.refuse_reason("Prefill")
        if refusal:
            await context.abort(grpc.StatusCode.UNAVAILABLE, refusal)
        if not request.prompt_ids:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty prompt")
        if len(request.prompt_ids) > rt.max_context:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"prompt of {len(request.prompt_ids)} tokens exceeds the context limit of {rt.max_context}",
            )
        dest = request.destination
        try:
            prompt, sampling = inputs_from_proto(
                request.prompt_ids, request.sampling, rt.backend.prompt_vocab_size
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        req = Request(
            request.request_id,
            prompt,
            sampling,
            kind=RequestKind.PREFILL_ONLY,
            eos_token_id=rt.eos_token_id,
        )
        assert rt.sender is not None
        flow = prefill_and_ship(
            rt.compute,
            rt.sender,
            req,
            (dest.host, dest.port),
            dest.transfer_id,
            kv_compression=rt.options.kv_compression,
        )
        try:
            report = await rt.run_abortable(request.request_id, flow)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except RequestAborted:
            await context.abort(grpc.StatusCode.ABORTED, "aborted: the request was aborted")
        except PrefillFailed as exc:
            rt.transfer_metrics.record_failure(f"{dest.host}:{dest.port}", exc.code)
            log.warning("prefill %s failed: %s", request.request_id, exc)
            record_prefill(context, rt.worker_id, request.request_id, arrived, None, str(exc))
            await context.abort(grpc.StatusCode.ABORTED, f"{exc.code}: {exc}")
        record_prefill(context, rt.worker_id, request.request_id, arrived, report)
        rt.counters.prefill_tokens += report.num_prompt_tokens - report.num_cached_tokens
        rt.counters.prefill_lengths.record(report.num_prompt_tokens - report.num_cached_tokens)
        rt.counters.prefill_seconds += report.prefill_seconds
        rt.worker_metrics.record_prefix_lookup(
            rt.worker_id, report.num_prompt_tokens, report.num_cached_tokens
        )
        rt.record_sent(
            f"{dest.host}:{dest.port}",
            report.bytes_sent,
            report.transfer_seconds,
            report.exposed_transfer_seconds,
        )
        return worker_pb2.PrefillResult(
            request_id=request.request_id,
            first_token=report.first_token,
            num_prompt_tokens=report.num_prompt_tokens,
            num_cached_tokens=report.num_cached_tokens,
            queue_seconds=report.queue_seconds,
            prefill_seconds=report.prefill_seconds,
            transfer_seconds=report.transfer_seconds,
            exposed_transfer_seconds=report.exposed_transfer_seconds,
            bytes_sent=report.bytes_sent,
        )

    async def Abort(  # noqa: N802
        self, request: worker_pb2.AbortRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.AbortResponse:
        return worker_pb2.AbortResponse(found=self.runtime.abort(request.request_id))

    async def GetLoad(  # noqa: N802
        self, request: worker_pb2.LoadRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.WorkerLoad:
        rt = self.runtime
        # Answered from the compute thread's latest snapshot, never by waiting for a step: a long
        # step must make this worker look busy to the router, not dead.
        snap = rt.queue_state()
        budget = int(rt.options.cache_budget_mb * (1 << 20))
        c = rt.counters
        live, open_transfers, leaks = rt.leak_report()
        buckets, bucket_bytes, bucket_waited = rt.line_busy.report(time.time())
        return worker_pb2.WorkerLoad(
            num_live_requests=live,
            max_num_seqs=rt.options.max_num_seqs,
            max_context=rt.max_context,
            model_name=rt.model_name,
            kv_bytes_per_token=rt.kv_footprint[0],
            kv_state_bytes=rt.kv_footprint[1],
            kv_queued_bytes=rt.kv_queued_bytes(),
            kv_segments_sent=rt.kv_segments_sent,
            kv_segments_retransmitted=rt.kv_segments_retransmitted,
            kv_rtt_seconds=rt.kv_rtt_seconds,
            num_open_transfers=open_transfers,
            leak_report=leaks,
            worker_id=rt.worker_id,
            cluster=rt.cluster,
            role=self.role,
            num_waiting=snap.num_waiting,
            num_running=snap.num_running,
            num_waiting_for_kv=snap.num_waiting_for_kv,
            busy_fraction=rt.busy_fraction(),
            cache_bytes_used=int(snap.cache_usage * budget),
            cache_bytes_budget=budget,
            prefill_tokens_per_second=c.prefill_tokens / c.prefill_seconds
            if c.prefill_seconds
            else 0.0,
            decode_tokens_per_second=rt.decode_rate(),
            kv_bytes_sent=c.kv_bytes_sent,
            kv_egress_bytes_per_second=rt.egress_rate(),
            kv_delivery_bytes_per_second=rt.kv_delivery_bytes_per_s,
            kv_sending_connections=rt.kv_sending_connections,
            draining=self.draining or self.stopping,
            prefill_backlog_seconds=snap.prefill_backlog_s,
            prefill_length_counts=c.prefill_lengths.counts,
            prefill_length_tokens=c.prefill_lengths.tokens,
            kv_line_buckets=buckets,
            kv_line_bucket_bytes=bucket_bytes,
            kv_line_bucket_waited_seconds=bucket_waited,
        )

    async def StreamCacheEvents(  # noqa: N802
        self, request: worker_pb2.CacheEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb2.CacheEventBatch]:
        rt = self.runtime
        queue = rt.hub.subscribe()
        try:
            # A fresh subscriber first forgets whatever it knew about this worker.
            yield worker_pb2.CacheEventBatch(
                worker_id=rt.worker_id,
                block_size=rt.block_size,
                events=[worker_pb2.CacheEvent(kind=worker_pb2.CacheEvent.CLEARED)],
            )
            while True:
                event = await queue.get()
                batch = []
                while event is not None:
                    batch.append(
                        worker_pb2.CacheEvent(
                            kind=event.kind.name,  # the wire enum has the same names (and numbers)
                            block_hash=event.block_hash,
                            block_index=event.block_index,
                            has_checkpoint=event.has_checkpoint,
                        )
                    )
                    if queue.empty() or len(batch) >= 512:
                        break
                    event = queue.get_nowait()
                if batch:
                    yield worker_pb2.CacheEventBatch(
                        worker_id=rt.worker_id, block_size=rt.block_size, events=batch
                    )
                if event is None:
                    return
        finally:
            rt.hub.unsubscribe(queue)
