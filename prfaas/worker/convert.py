"""Proto messages <-> in-process objects, in one place (services call only these)."""

from __future__ import annotations

from prfaas._proto.prfaas.v1 import common_pb2
from prfaas.engine.backend_base import BufferSpec
from prfaas.kvtransfer.wire import LayerLayout
from prfaas.model.sampler import SamplingParams
from prfaas.request import RequestStatus


def sampling_from_proto(msg: common_pb2.SamplingParams) -> SamplingParams:
    """Wire defaults (zeros) mean greedy decoding; max_tokens 0 means the default of 16."""
    return SamplingParams(
        temperature=msg.temperature,
        top_p=msg.top_p if 0 < msg.top_p <= 1 else 1.0,
        top_k=max(0, msg.top_k),
        seed=msg.seed if msg.has_seed else None,
        max_tokens=msg.max_tokens if msg.max_tokens > 0 else 16,
        ignore_eos=msg.ignore_eos,
        stop_sequences=tuple(tuple(s.ids) for s in msg.stop_token_ids if len(s.ids) > 0),
    )


def finish_reason(status: RequestStatus) -> int:
    return {
        RequestStatus.FINISHED_STOPPED: common_pb2.FINISH_REASON_STOP,
        RequestStatus.FINISHED_LENGTH: common_pb2.FINISH_REASON_LENGTH,
        RequestStatus.FINISHED_ABORTED: common_pb2.FINISH_REASON_ABORT,
        RequestStatus.FAILED: common_pb2.FINISH_REASON_ERROR,
    }.get(status, common_pb2.FINISH_REASON_UNSPECIFIED)


def wire_layout(specs: list[BufferSpec]) -> list[LayerLayout]:
    """One wire layer per model layer, each declared as a single logical buffer."""
    return [[(s.name, s.dtype, s.nbytes)] for s in specs]
