"""The prefill→decode handshake of a two-worker request: the one implementation (router and benchmarks).

A request whose prefill runs on worker P and whose decode runs on worker D (PrfaaS → PD-D across
the link, or PD-P → PD-D inside the PD cluster) starts in this order:
  1. `D.Generate` with a `KvSource(transfer_id, sender_id=P, deadline)`: D preallocates the cache
     and registers `transfer_id` with its KV receiver, then sends `Admitted` as its first event;
  2. at the same time, `P.Prefill` with `KvDestination(D's KV address as P reaches it, the same
     transfer_id)`: P queues and computes while D admits; its sender's OPEN waits in D's receiver
     until D registered the transfer (the receiver holds an early OPEN for `kv_open_grace_s`), so
     no byte moves before D's memory is reserved, and D's admission wait (the rest of its decode
     step, or memory to free up) overlaps P's queue and compute instead of preceding them
     (issue 12);
  3. the first token comes out of D's stream (P returns its `PrefillResult` once D acknowledged
     every byte).
When D's first event is not `Admitted` (refused, failed) or waiting for it fails, `open` cancels
P's call (P aborts its prefill and its transfer; D's receiver drops the waiting OPEN) before
returning or raising: a refused admission leaves nothing running on P.
`TwoWorkerHandshake.open` runs steps 1–2; how long to wait for `Admitted`, and what a failure
means, stay with the caller (the router's attempt re-routes, a benchmark raises).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from prfaas._proto.prfaas.v1 import worker_pb2, worker_pb2_grpc

NextEvent = Callable[[grpc.aio.UnaryStreamCall], Awaitable[worker_pb2.GenerateEvent]]
"""Waits for the next event of D's Generate stream (with the caller's deadline and checks)."""


@dataclass
class TwoWorkerHandshake:
    """One request's handshake between decode worker `decode` and prefill worker `prefill`.

    `request` is the decode-only Generate without its `kv_source` (added here); `destination` is
    D's KV receiver as P reaches it; `prefill_id` the identity P presents in the KV handshake.
    The caller owns the calls once opened and cancels them (`call.cancel()`, `prefill.cancel()`).
    """

    decode: worker_pb2_grpc.WorkerStub
    prefill: worker_pb2_grpc.WorkerStub
    request: worker_pb2.GenerateRequest
    prefill_id: str
    destination: tuple[str, int]
    kv_deadline_s: float
    """How long D waits for the whole cache before failing the request."""
    prefill_timeout_s: float
    """gRPC deadline of P's Prefill call."""
    decode_timeout_s: float | None = None
    """gRPC deadline of D's Generate stream (None: none, the caller watches it)."""
    metadata: tuple[tuple[str, str], ...] = ()
    """Sent with both calls (trace context)."""
    transfer_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    call: grpc.aio.UnaryStreamCall | None = None
    """D's Generate stream, once `open` started it."""
    prefill_call: asyncio.Task[worker_pb2.PrefillResult] | None = None
    """P's Prefill, started with D's Generate; None again if D did not admit."""

    async def open(self, next_event: NextEvent) -> worker_pb2.GenerateEvent:
        """Steps 1–2: start D's decode-only Generate and P's Prefill, and wait (with `next_event`)
        for D's first event. Returns it; anything but `Admitted` is the caller's failure to handle,
        and P's call is then already cancelled (`prefill_call` None), as it is when `next_event`
        raises."""
        self.request.kv_source.CopyFrom(
            worker_pb2.KvSource(
                transfer_id=self.transfer_id,
                sender_id=self.prefill_id,
                deadline_seconds=self.kv_deadline_s,
            )
        )
        self.call = self.decode.Generate(
            self.request, timeout=self.decode_timeout_s, metadata=self.metadata
        )
        self.prefill_call = asyncio.ensure_future(self._prefill())
        try:
            first = await next_event(self.call)
        except BaseException:
            self._cancel_prefill()
            raise
        if first.WhichOneof("event") != "admitted":
            self._cancel_prefill()
        return first

    def _cancel_prefill(self) -> None:
        if self.prefill_call is not None:
            self.prefill_call.cancel()
            self.prefill_call = None

    def _prefill(self) -> Awaitable[worker_pb2.PrefillResult]:
        host, port = self.destination
        gen = self.request
        prefill = worker_pb2.PrefillRequest(
            request_id=gen.request_id,
            prompt_ids=gen.prompt_ids,
            sampling=gen.sampling,
            destination=worker_pb2.KvDestination(
                host=host, port=port, transfer_id=self.transfer_id
            ),
        )
        return self.prefill.Prefill(prefill, timeout=self.prefill_timeout_s, metadata=self.metadata)


async def first_event(call: grpc.aio.UnaryStreamCall) -> worker_pb2.GenerateEvent:
    """`NextEvent` for callers with no deadline of their own, who then iterate the stream
    (`async for event in call` continues after this one); RuntimeError when it ends first."""
    try:
        event: worker_pb2.GenerateEvent = await anext(aiter(call))
    except StopAsyncIteration:
        raise RuntimeError("the decode worker ended its stream before admitting") from None
    return event
