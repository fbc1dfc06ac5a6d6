"""Generate on a PD worker: local prefill + decode, or decode-only from a cache arriving over TCP.

Lifecycle of one request:
1. Admission: the request enters the engine (a `full` request; or a `decode_only` one, which the
   scheduler preallocates blocks and a state slot for, in the same compute-thread call that
   returns its destination views). `Admitted` is emitted once the request is queued — for
   decode-only, once the KV receiver registered the transfer (a sender's OPEN that came earlier
   waits for that registration in the receiver). A decode-only request is refused with
   `overloaded` when the line for decode seats is full (worker/seat_line.py).
2. Decode-only: the receiver writes the transfer straight into the preallocated blocks. On success
   the handoff trailer gives the first token and the request starts decoding; on failure the
   engine frees the blocks (nothing was installed) and the stream ends with an error.
3. Tokens stream as `Tokens` events; the stream ends with exactly one `Finished` or `Failed`.
4. Cancellation (client gone, router abort) at any stage aborts the transfer first (dropping its
   references to the destination memory), then frees the request in the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prfaas.engine.core import EngineCore
from prfaas.engine.execution_backend import BufferSpec
from prfaas.engine.outputs import RequestEvent, RequestOutput
from prfaas.kvtransfer.base import KVReceiver, TransferError
from prfaas.request import Request, RequestKind, RequestStatus
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.handoff import Handoff, HandoffError
from prfaas.worker.seat_line import SeatLine, SeatsFull
from prfaas.worker.wire_inputs import wire_layout


@dataclass(frozen=True)
class Admitted:
    num_cached_tokens: int = 0


@dataclass(frozen=True)
class Tokens:
    ids: list[int]


@dataclass(frozen=True)
class Finished:
    status: RequestStatus
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_seconds: float


@dataclass(frozen=True)
class KvReceived:
    """Decode-only: the whole cache arrived (bytes, seconds from registering to done)."""

    num_bytes: int
    seconds: float


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


GenerateEvent = Admitted | KvReceived | Tokens | Finished | Failed


@dataclass(frozen=True)
class KvSourceSpec:
    transfer_id: str
    sender_id: str
    deadline_seconds: float


Destination = tuple[list[BufferSpec], list[list[memoryview]]]


def _destination(engine: EngineCore, request_id: str) -> Destination:
    """A preallocated decode-only request's transfer layout and destination views."""
    return engine.transfer_layout(request_id), engine.receive_segments(request_id)


def _add(
    engine: EngineCore, req: Request, seats: SeatLine | None = None, arriving: int = 0
) -> Destination | None:
    """On the compute thread: add `req`; a decode-only one preallocated at once also gets its
    destination (None otherwise: its PREALLOCATED output comes when memory frees up). A
    decode-only one is refused (`SeatsFull`) when `seats` says the line for seats is full."""
    if seats is not None and req.kind is RequestKind.DECODE_ONLY:
        refusal = seats.refusal(engine.scheduler.num_with_kv, arriving)
        if refusal is not None:
            raise SeatsFull(refusal)
    engine.add_request(req)
    if req.kind is RequestKind.DECODE_ONLY and req.status is RequestStatus.WAITING_FOR_KV:
        return _destination(engine, req.request_id)
    return None


async def _next_output(outputs: asyncio.Queue[RequestOutput], deadline: float) -> RequestOutput:
    return await asyncio.wait_for(outputs.get(), max(0.001, deadline - time.monotonic()))


async def generate(
    compute: ComputeLoop,
    req: Request,
    *,
    receiver: KVReceiver | None = None,
    source: KvSourceSpec | None = None,
    timeout_s: float = 600.0,
    kv_compression: str = "none",
    seats: SeatLine | None = None,
) -> AsyncIterator[GenerateEvent]:
    """Drive one request to completion, yielding events. Frees everything on exit.
    `kv_compression` (fp8, int8) expects the full-attention KV encoded on the line and decodes it
    into the cache once the transfer is done (prfaas/worker/kv_compression.py). `seats` bounds
    decode-only admissions (worker/seat_line.py: `Failed("overloaded")` past it) and tracks
    this request's transfer for the bound."""
    rid = req.request_id
    arrived = time.monotonic()
    deadline = arrived + timeout_s
    outputs = compute.subscribe(rid)
    handle = None
    added = finished = False
    cached = 0
    first_token_at: float | None = None
    try:
        # Set before the await: a cancellation while the call is queued still lets the add run on
        # the compute thread, and only the abort queued behind it (finally) frees it again.
        added = True
        try:
            # One hop to the compute thread admits a decode-only request and, when memory allows
            # its preallocation at once, returns its destination: each hop waits for the step in
            # progress (a whole decode step), so admission costs at most one (issue 12 item 2).
            arriving = seats.nearly_done() if seats is not None else 0
            dest_now = await compute.call(lambda e: _add(e, req, seats, arriving))
        except SeatsFull as exc:
            added = False
            yield Failed("overloaded", str(exc))
            return
        except ValueError as exc:
            added = False  # refused (maybe a duplicate id: never abort the other request)
            yield Failed("refused", str(exc))
            return
        if req.kind is RequestKind.DECODE_ONLY:
            assert receiver is not None and source is not None, "decode-only needs a KV source"
            out = await _next_output(outputs, deadline)
            if out.event is not RequestEvent.PREALLOCATED:
                finished = out.finished
                yield Failed("refused", out.error or f"not preallocated ({out.status.value})")
                return
            if dest_now is None:  # preallocated later, once memory freed up
                dest_now = await compute.call(lambda e: _destination(e, rid))
            layout, dest = dest_now
            decoder = None
            on_wire, wire_dest = layout, dest
            if kv_compression != "none":
                from prfaas.worker.kv_compression import KvDecoder  # torch: only when compressing

                decoder = KvDecoder(kv_compression, layout, req.num_prompt_tokens, dest)
                on_wire, wire_dest = decoder.wire_layout, decoder.wire_dest
            handle = receiver.expect(
                source.transfer_id,
                wire_layout(on_wire),
                wire_dest,
                source.deadline_seconds,
                sender_identity=source.sender_id or None,
            )
            if seats is not None:
                seats.track(rid, handle)
            yield Admitted()
            expected_at = time.monotonic()
            try:
                trailer = await handle.wait_done()
                handoff = Handoff.decode(trailer, req.num_prompt_tokens)
            except (TransferError, HandoffError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                await compute.call(lambda e: e.mark_kv_failed(rid, reason))
                finished = True
                yield Failed("kv_transfer_failed", reason)
                return
            cached = handoff.num_cached_tokens

            def ready(e: EngineCore) -> None:
                # One hop: decode the compressed KV into the cache, then seat the request; its
                # first token goes out with this call, not after the next step.
                if decoder is not None:
                    decoder.install()
                e.mark_kv_ready(rid, handoff.first_token)

            await compute.call(ready)
            yield KvReceived(sum(spec.nbytes for spec in on_wire), time.monotonic() - expected_at)
        else:
            yield Admitted()
        completion = 0
        while True:
            out = await _next_output(outputs, deadline)
            if out.new_token_ids:
                if first_token_at is None:
                    first_token_at = time.monotonic()
                    cached = cached or out.num_cached_tokens
                completion += len(out.new_token_ids)
                yield Tokens(list(out.new_token_ids))
            if out.finished:
                finished = True
                if out.status in (RequestStatus.FAILED, RequestStatus.FINISHED_ABORTED):
                    yield Failed("engine_error" if out.error else "aborted", out.error or "aborted")
                    return
                yield Finished(
                    out.status,
                    req.num_prompt_tokens,
                    completion,
                    cached,
                    (first_token_at or time.monotonic()) - arrived,
                )
                return
    except TimeoutError:
        yield Failed("timeout", f"request {rid} exceeded {timeout_s:.0f}s")
    finally:
        compute.unsubscribe(rid, outputs)
        if seats is not None and handle is not None:
            seats.untrack(rid)
        if handle is not None and not handle.state.terminal:
            handle.abort("decode side gave up")
        if added and not finished:
            await asyncio.shield(compute.call(lambda e: e.abort(rid)))
