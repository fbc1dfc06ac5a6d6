"""Client-side request flows against worker processes, timed where the client sees the events."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc

TIMEOUT_S = 600.0


def _request(
    prompt: list[int], max_tokens: int, source: worker_pb2.KvSource | None = None
) -> worker_pb2.GenerateRequest:
    return worker_pb2.GenerateRequest(
        request_id=uuid.uuid4().hex,
        prompt_ids=prompt,
        sampling=common_pb2.SamplingParams(max_tokens=max_tokens, ignore_eos=True),
        kv_source=source,
    )


async def _token_events(
    events: AsyncIterator[worker_pb2.GenerateEvent],
) -> AsyncIterator[tuple[float, int]]:
    """(arrival time, number of ids) per token event; raises on an error event."""
    async for ev in events:
        kind = ev.WhichOneof("event")
        if kind == "tokens":
            yield time.monotonic(), len(ev.tokens.ids)
        elif kind == "error":
            raise RuntimeError(f"worker error {ev.error.code}: {ev.error.message}")
        elif kind == "finished":
            return


@dataclass
class DecodeStream:
    """A long-running decode whose token arrival times (one per id) are recorded."""

    times: list[float] = field(default_factory=list)

    async def run(self, stub: worker_pb2_grpc.WorkerStub, prompt: list[int], n: int) -> None:
        call = stub.Generate(_request(prompt, n), timeout=TIMEOUT_S)
        async for at, count in _token_events(call):
            self.times.extend([at] * count)


async def time_to_first_token(stub: worker_pb2_grpc.WorkerStub, prompt: list[int]) -> float:
    """Local prefill on a PD worker: seconds from sending Generate to its first token event."""
    start = time.monotonic()
    async for at, _ in _token_events(stub.Generate(_request(prompt, 1), timeout=TIMEOUT_S)):
        return at - start
    raise RuntimeError("stream ended without a token")


@dataclass(frozen=True)
class RemoteRun:
    ttft_seconds: float
    result: worker_pb2.PrefillResult


async def remote_prefill(
    decode: worker_pb2_grpc.WorkerStub,
    prefill: worker_pb2_grpc.WorkerStub,
    prefill_id: str,
    kv_port: int,
    prompt: list[int],
) -> RemoteRun:
    """The router's offload flow: decode-only Generate, wait Admitted, then Prefill to `kv_port`.
    TTFT runs from sending Generate to the decode worker's first token event."""
    tid = uuid.uuid4().hex
    source = worker_pb2.KvSource(transfer_id=tid, sender_id=prefill_id, deadline_seconds=300)
    request = _request(prompt, 2, source)
    start = time.monotonic()
    call = decode.Generate(request, timeout=TIMEOUT_S)
    events = call.__aiter__()
    first = await events.__anext__()
    if first.WhichOneof("event") != "admitted":
        raise RuntimeError(f"decode worker did not admit the request: {first}")
    dest = worker_pb2.KvDestination(host="127.0.0.1", port=kv_port, transfer_id=tid)
    prefill_call = prefill.Prefill(
        worker_pb2.PrefillRequest(
            request_id=request.request_id,
            prompt_ids=prompt,
            sampling=request.sampling,
            destination=dest,
        ),
        timeout=TIMEOUT_S,
    )
    result = asyncio.ensure_future(prefill_call)
    ttft = None
    try:
        async for at, _ in _token_events(events):
            ttft = at - start if ttft is None else ttft
    finally:
        if ttft is None:
            result.cancel()
    if ttft is None:
        raise RuntimeError("remote stream ended without a token")
    return RemoteRun(ttft, await result)
