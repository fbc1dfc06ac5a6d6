"""The gRPC `Router` service: a thin servicer over the dispatcher and the registry.

`Generate` streams a `RouteDecision` before the first token (a second one if the request was
re-routed before any token), then `TokenChunk`s and one `Finished`, or one `WorkerError`
(code "invalid_argument", "overloaded", "not_ready", "context_too_long" or "failed"). A request
outside `prfaas/request_limits.py` (token ids outside the vocabulary, non-finite or out-of-range
sampling values) is refused with "invalid_argument" before any worker sees it. When the client
cancels the call, the dispatcher's generator is closed and aborts the request on every worker
involved.
`RegisterWorker` adds the worker to the registry (replacing one with the same id, unless another
identity registered it: PERMISSION_DENIED; the interceptor already let only that worker's own
identity through when credentials are configured).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from prfaas._proto.prfaas.v1 import common_pb2, router_pb2, router_pb2_grpc, worker_pb2
from prfaas.request_limits import InvalidRequest, check_token_ids, checked_sampling
from prfaas.router.dispatcher import Dispatcher
from prfaas.router.generation_backend import (
    BackendError,
    ContextTooLong,
    GenerationFinished,
    GenerationRequest,
    NotReady,
    Overloaded,
)
from prfaas.router.policy import RouteDecision, Target
from prfaas.router.registry import WorkerRegistry
from prfaas.sampling import FinishReason, SamplingParams
from prfaas.security.interceptor import current_principal

_FINISH = {
    FinishReason.STOP: common_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: common_pb2.FINISH_REASON_LENGTH,
}


def from_sampling_params(p: common_pb2.SamplingParams, vocab_size: int) -> SamplingParams:
    """Inverse of `flows.to_sampling_params` (single-id stops become stop_token_ids), checked:
    raises `InvalidRequest` for values outside `prfaas/request_limits.py`."""
    singles = tuple(s.ids[0] for s in p.stop_token_ids if len(s.ids) == 1)
    seqs = tuple(tuple(s.ids) for s in p.stop_token_ids if len(s.ids) > 1)
    return checked_sampling(
        vocab_size, temperature=p.temperature, top_p=p.top_p or 1.0, top_k=p.top_k,
        seed=p.seed if p.has_seed else None, max_tokens=p.max_tokens or 16,
        ignore_eos=p.ignore_eos, stop_token_ids=singles, stop_sequences=seqs,
    )  # fmt: skip


def _decision_event(d: RouteDecision) -> router_pb2.RouterGenerateEvent:
    msg = router_pb2.RouteDecision(
        route="offload" if d.target is Target.PRFAAS else "local", reason=d.reason.value,
        prefill_worker=d.prefill_worker or "", decode_worker=d.decode_worker or "",
        cached_tokens=d.cached_tokens, threshold_tokens=int(min(d.threshold, 2**31 - 1)),
    )  # fmt: skip
    return router_pb2.RouterGenerateEvent(decision=msg)


def _error_event(code: str, message: str) -> router_pb2.RouterGenerateEvent:
    return router_pb2.RouterGenerateEvent(error=worker_pb2.WorkerError(code=code, message=message))


class RouterService(router_pb2_grpc.RouterServicer):
    def __init__(
        self, dispatcher: Dispatcher, registry: WorkerRegistry, *, vocab_size: int
    ) -> None:
        """`vocab_size`: prompt and stop ids must be in [0, vocab_size) (the tokenizer's ids)."""
        self.dispatcher = dispatcher
        self.registry = registry
        self.vocab_size = vocab_size

    async def Generate(
        self, request: router_pb2.RouterGenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.RouterGenerateEvent]:
        try:
            if not request.prompt_ids:
                raise InvalidRequest("prompt_ids", "The prompt is empty.")
            check_token_ids(request.prompt_ids, self.vocab_size, "prompt_ids")
            sampling = from_sampling_params(request.sampling, self.vocab_size)
        except InvalidRequest as exc:
            yield _error_event("invalid_argument", exc.message)
            return
        limit = self.dispatcher.max_context
        if len(request.prompt_ids) + sampling.max_tokens > limit:
            yield _error_event("context_too_long", str(ContextTooLong(limit)))
            return
        gen = GenerationRequest(request.request_id, tuple(request.prompt_ids), sampling)
        stream = self.dispatcher.generate_routed(gen)
        try:
            async for item in stream:
                if isinstance(item, RouteDecision):
                    yield _decision_event(item)
                elif isinstance(item, GenerationFinished):
                    u = item.usage
                    usage = common_pb2.Usage(prompt_tokens=u.prompt_tokens,
                                             completion_tokens=u.completion_tokens,
                                             cached_tokens=u.cached_tokens)  # fmt: skip
                    fin = worker_pb2.Finished(reason=_FINISH[item.finish_reason], usage=usage)
                    yield router_pb2.RouterGenerateEvent(finished=fin)
                else:
                    chunk = worker_pb2.TokenChunk(ids=list(item.token_ids))
                    yield router_pb2.RouterGenerateEvent(tokens=chunk)
        except Overloaded as exc:
            yield _error_event("overloaded", str(exc))
        except NotReady as exc:
            yield _error_event("not_ready", str(exc))
        except BackendError as exc:
            yield _error_event("failed", str(exc))
        finally:
            await stream.aclose()

    async def RegisterWorker(
        self, request: router_pb2.RegisterWorkerRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.RegisterWorkerResponse:
        if request.kind not in ("prefill", "pd") or not request.worker_id:
            return router_pb2.RegisterWorkerResponse(accepted=False)
        try:
            self.registry.register(request, current_principal())
        except PermissionError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except ValueError:
            return router_pb2.RegisterWorkerResponse(accepted=False)
        heartbeat = self.registry.config.poll_interval_s
        return router_pb2.RegisterWorkerResponse(accepted=True, heartbeat_seconds=heartbeat)
