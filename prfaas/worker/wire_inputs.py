"""Proto messages <-> in-process objects, in one place (services call only these)."""

from __future__ import annotations

from collections.abc import Sequence

from prfaas._proto.prfaas.v1 import common_pb2
from prfaas.engine.execution_backend import BufferSpec
from prfaas.kvtransfer.wire import LayerLayout
from prfaas.request import RequestStatus
from prfaas.request_limits import (
    GREEDY_TEMPERATURE,
    InvalidRequest,
    check_sampling,
    check_token_ids,
)
from prfaas.sampling import SamplingParams


def inputs_from_proto(
    prompt_ids: Sequence[int], msg: common_pb2.SamplingParams, vocab_size: int
) -> tuple[list[int], SamplingParams]:
    """A request's checked prompt and engine sampling parameters, from the wire. Raises
    `InvalidRequest` (a ValueError) for ids outside [0, vocab_size) and for values the engine
    cannot run (`prfaas/request_limits.py`), so neither ever reaches a step.

    Wire defaults: temperature 0 is greedy, top_p 0 and top_k 0 or -1 are off, max_tokens 0 means
    the default of 16. Temperatures in (0, GREEDY_TEMPERATURE) are greedy too (sampling at them
    overflows the logits)."""
    check_token_ids(prompt_ids, vocab_size, "prompt_ids")
    temperature = msg.temperature
    if 0 <= temperature < GREEDY_TEMPERATURE:
        temperature = 0.0
    try:
        params = SamplingParams(
            temperature=temperature,
            top_p=msg.top_p if msg.top_p != 0 else 1.0,
            top_k=0 if msg.top_k == -1 else msg.top_k,
            seed=msg.seed if msg.has_seed else None,
            max_tokens=msg.max_tokens if msg.max_tokens != 0 else 16,
            ignore_eos=msg.ignore_eos,
            stop_sequences=tuple(tuple(s.ids) for s in msg.stop_token_ids if len(s.ids) > 0),
        )
    except ValueError as exc:  # SamplingParams' own range checks
        raise InvalidRequest("sampling", str(exc)) from exc
    check_sampling(params, vocab_size)
    return list(prompt_ids), params


def finish_reason(status: RequestStatus) -> common_pb2.FinishReason:
    return {
        RequestStatus.FINISHED_STOPPED: common_pb2.FINISH_REASON_STOP,
        RequestStatus.FINISHED_LENGTH: common_pb2.FINISH_REASON_LENGTH,
        RequestStatus.FINISHED_ABORTED: common_pb2.FINISH_REASON_ABORT,
        RequestStatus.FAILED: common_pb2.FINISH_REASON_ERROR,
    }.get(status, common_pb2.FINISH_REASON_UNSPECIFIED)


def wire_layout(specs: list[BufferSpec]) -> list[LayerLayout]:
    """One wire layer per model layer, each declared as a single logical buffer."""
    return [[(s.name, s.dtype, s.nbytes)] for s in specs]
