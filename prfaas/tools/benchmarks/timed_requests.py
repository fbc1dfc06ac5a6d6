"""Requests to worker processes, timed where the client sees the events (`prfaas bench workers`).

The two-worker request runs the router's own handshake (prfaas/router/two_worker_handshake.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from prfaas._proto.prfaas.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from prfaas.router.two_worker_handshake import TwoWorkerHandshake, first_event

TIMEOUT_S = 600.0


def _request(prompt: list[int], max_tokens: int) -> worker_pb2.GenerateRequest:
    return worker_pb2.GenerateRequest(
        request_id=uuid.uuid4().hex,
        prompt_ids=prompt,
        sampling=common_pb2.SamplingParams(max_tokens=max_tokens, ignore_eos=True),
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
    """The router's offload flow (its handshake): decode-only Generate, Admitted, then Prefill to
    `kv_port`. TTFT runs from sending Generate to the decode worker's first token event."""
    handshake = TwoWorkerHandshake(
        decode,
        prefill,
        _request(prompt, 2),
        prefill_id,
        ("127.0.0.1", kv_port),
        kv_deadline_s=300,
        prefill_timeout_s=TIMEOUT_S,
        decode_timeout_s=TIMEOUT_S,
    )
    start = time.monotonic()
    first = await handshake.open(first_event)
    if handshake.prefill_call is None or handshake.call is None:
        raise RuntimeError(f"decode worker did not admit the request: {first}")
    result = handshake.prefill_call
    ttft = None
    try:
        async for at, _ in _token_events(handshake.call):
            ttft = at - start if ttft is None else ttft
    finally:
        if ttft is None:
            result.cancel()
    if ttft is None:
        raise RuntimeError("remote stream ended without a token")
    return RemoteRun(ttft, await result)
