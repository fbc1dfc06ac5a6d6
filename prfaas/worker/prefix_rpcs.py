"""ImportPrefix / ExportPrefix RPCs, served identically by both worker kinds (a mixin).

Protos in, `prefix_flow` calls out. Each call is tracked under its id like a request (Abort cancels
it; a role change drains it). Validation before any engine work: same block size on both sides,
a positive multiple of it as the prefix length, ids in the vocabulary, a KV receiver on an
importing worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.request_limits import InvalidRequest, check_token_ids
from prfaas.worker import prefix_flow as flow
from prfaas.worker.runtime import RequestAborted, WorkerRuntime

log = logging.getLogger(__name__)
DEFAULT_DEADLINE_S = 60.0


def _import_error(code: str, message: str) -> worker_pb2.ImportPrefixEvent:
    return worker_pb2.ImportPrefixEvent(error=worker_pb2.WorkerError(code=code, message=message))


class PrefixRpcs:
    runtime: WorkerRuntime

    def refuse_reason(self, rpc: str) -> str | None:  # overridden by the services
        return None

    def _invalid(self, token_ids: list[int], block_size: int) -> str | None:
        bs = self.runtime.block_size
        if block_size != bs:
            return f"block size {block_size} differs from this worker's {bs}"
        if not token_ids or len(token_ids) % bs:
            return f"prefix of {len(token_ids)} tokens is not a positive multiple of {bs}"
        if len(token_ids) >= self.runtime.max_context:
            return f"prefix of {len(token_ids)} tokens exceeds the context limit"
        try:
            check_token_ids(token_ids, self.runtime.backend.prompt_vocab_size, "token_ids")
        except InvalidRequest as exc:
            return exc.message
        return None

    async def ImportPrefix(  # noqa: N802 (gRPC method name)
        self, request: worker_pb2.ImportPrefixRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb2.ImportPrefixEvent]:
        rt = self.runtime
        tokens = list(request.token_ids)
        refusal = self.refuse_reason("ImportPrefix")
        if refusal is None and rt.receiver is None:
            refusal = f"worker {rt.worker_id} has no KV receiver (start it with --kv-port)"
        if refusal:
            yield _import_error("unavailable", refusal)
            return
        invalid = self._invalid(tokens, request.block_size)
        if invalid:
            yield _import_error("invalid_argument", invalid)
            return
        assert rt.receiver is not None
        events = flow.import_prefix(
            rt.compute, rt.receiver, request.import_id, tokens, request.transfer_id,
            request.sender_id, request.deadline_seconds or DEFAULT_DEADLINE_S,
        )  # fmt: skip
        try:
            async for event in rt.stream_abortable(request.import_id, events):
                if isinstance(event, flow.ImportAdmitted):
                    yield worker_pb2.ImportPrefixEvent(admitted=worker_pb2.Admitted())
                elif isinstance(event, flow.ImportDone):
                    rt.record_received(
                        request.sender_id or "kv", event.bytes_received, event.transfer_seconds
                    )
                    log.info("imported prefix %s: %d tokens from %s", request.import_id,
                             event.num_tokens, request.sender_id)  # fmt: skip
                    yield worker_pb2.ImportPrefixEvent(
                        done=worker_pb2.PrefixImported(
                            num_tokens=event.num_tokens,
                            bytes_received=event.bytes_received,
                            transfer_seconds=event.transfer_seconds,
                        )
                    )
                else:
                    if event.code == "kv_transfer_failed":
                        rt.transfer_metrics.record_failure(request.sender_id or "kv", "receive")
                    log.warning("prefix import %s failed: %s", request.import_id, event.message)
                    yield _import_error(event.code, event.message)
        except ValueError as exc:
            yield _import_error("duplicate", str(exc))
        except RequestAborted:
            yield _import_error("aborted", "the import was aborted")

    async def ExportPrefix(  # noqa: N802
        self, request: worker_pb2.ExportPrefixRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.ExportPrefixResult:
        rt = self.runtime
        tokens = list(request.token_ids)
        refusal = self.refuse_reason("ExportPrefix")
        if refusal:
            await context.abort(grpc.StatusCode.UNAVAILABLE, refusal)
        invalid = self._invalid(tokens, request.block_size)
        if invalid:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, invalid)
        dest = request.destination
        link = f"{dest.host}:{dest.port}"
        assert rt.sender is not None
        export = flow.export_prefix(
            rt.compute, rt.sender, request.export_id, tokens, (dest.host, dest.port),
            dest.transfer_id, request.deadline_seconds or DEFAULT_DEADLINE_S,
        )  # fmt: skip
        try:
            report = await rt.run_abortable(request.export_id, export)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except RequestAborted:
            await context.abort(grpc.StatusCode.ABORTED, "aborted: the export was aborted")
        except flow.PrefixFlowError as exc:
            if exc.code == "kv_transfer_failed":
                rt.transfer_metrics.record_failure(link, exc.code)
            log.warning("prefix export %s failed: %s", request.export_id, exc)
            status = (
                grpc.StatusCode.FAILED_PRECONDITION
                if exc.code == "not_cached"
                else grpc.StatusCode.ABORTED
            )
            await context.abort(status, f"{exc.code}: {exc}")
        rt.record_sent(link, report.bytes_sent, report.transfer_seconds, 0.0)
        return worker_pb2.ExportPrefixResult(
            num_tokens=report.num_tokens,
            bytes_sent=report.bytes_sent,
            transfer_seconds=report.transfer_seconds,
        )
