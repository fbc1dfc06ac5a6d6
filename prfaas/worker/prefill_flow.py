"""Prefill a request and stream its cache, layer by layer, to a decode worker's KV receiver.

Used by PrfaaS prefill workers and by PD workers in the `prefill` role (PD-P).

Lifecycle of one request:
1. Layout: the backend declares one logical buffer per model layer for N prompt tokens; the sender
   opens the transfer (connects and handshakes in the background while we compute).
2. Compute: the request runs as `prefill_only` on the compute thread. After each layer finishes a
   chunk, the hook hands the new bytes to the sender at once: full-attention layers token range by
   token range (cached prefix blocks included, the first time), linear layers once, when their
   state covers all N tokens. The producer never waits on the network.
3. Handoff: prefill sampled token N+1; `finish` sends the transfer-done frame carrying it.
4. Release: once the receiver acknowledged everything (or the transfer failed), the engine frees
   the request's cache. The views handed to the sender stay valid until then.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prfaas.engine.execution_backend import BufferSpec, ExecutionBackend
from prfaas.kvtransfer.base import KVSender, TransferError
from prfaas.request import Request, RequestStatus
from prfaas.worker.compute import ComputeLoop
from prfaas.worker.handoff import Handoff
from prfaas.worker.wire_inputs import wire_layout

if TYPE_CHECKING:
    from prfaas.worker.kv_compression import KvEncoder


class PrefillFailed(Exception):
    """The prefill or its transfer failed; `code` is the stable kind reported to the router."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PrefillReport:
    first_token: int
    num_prompt_tokens: int
    num_cached_tokens: int
    queue_seconds: float
    prefill_seconds: float
    transfer_seconds: float
    exposed_transfer_seconds: float
    bytes_sent: int
    first_layer_seconds: float = 0.0
    """From the compute's start to the first layer's hand-over to the sender."""


@dataclass(frozen=True)
class _LengthOnly:
    """A `CacheSpan` of `num_prompt_tokens` tokens holding nothing (layouts read only the length)."""

    num_prompt_tokens: int
    block_table: list[int] = field(default_factory=list)
    state_slot: int | None = None
    num_computed_tokens: int = 0


def wire_bytes(backend: ExecutionBackend, num_tokens: int, kv_compression: str = "none") -> int:
    """Bytes a prefill of `num_tokens` prompt tokens puts on the wire (the layout `prefill_and_ship`
    declares: the backend's transfer layout, KV compression applied)."""
    layout = backend.transfer_layout(_LengthOnly(num_tokens))
    if kv_compression != "none":
        from prfaas.worker.kv_compression import KvEncoder  # torch: only when compressing

        layout = KvEncoder(kv_compression, layout, num_tokens).wire_layout
    return sum(spec.nbytes for spec in layout)


def wire_footprint(backend: ExecutionBackend, kv_compression: str = "none") -> tuple[float, int]:
    """(KV bytes per prompt token, per-request state bytes) this worker ships: the wire size is
    affine in the prompt length (token-major KV plus fixed linear states), read at two lengths.
    What the worker reports (`WorkerLoad.kv_bytes_per_token`, `kv_state_bytes`) so the router
    plans with the bytes really sent, not a profile's (an emulated deployment ships ÷1000)."""
    n = backend.block_size
    one, two = wire_bytes(backend, n, kv_compression), wire_bytes(backend, 2 * n, kv_compression)
    per_token = (two - one) / n
    return per_token, max(0, round(one - per_token * n))


def _is_token_major(spec: BufferSpec) -> bool:
    # Backends name full-attention buffers "Lnn.kv" (token-major bytes) and linear-layer state
    # buffers "Lnn.state" (sent whole, once final); see prfaas/engine/execution_backend.py.
    return spec.name.endswith(".kv")


class _LayerShipper:
    """Runs on the compute thread: turns layer-done events into sender.add calls."""

    def __init__(
        self,
        compute: ComputeLoop,
        request_id: str,
        layout: list[BufferSpec],
        n: int,
        handle,  # noqa: ANN001
        encoder: KvEncoder | None = None,
    ) -> None:
        self.compute, self.request_id, self.layout, self.n = compute, request_id, layout, n
        self.handle = handle
        # KV compression on: KV token ranges are encoded (and kept alive) by the encoder.
        self.encoder = encoder
        # Tokens of each full-attention layer already handed to the sender.
        self.shipped = [0] * len(layout)
        self.first_layer_done_at: float | None = None

    def __call__(self, layer: int, start: int, end: int) -> None:
        spec = self.layout[layer]
        engine = self.compute.engine
        if self.first_layer_done_at is None:
            self.first_layer_done_at = time.monotonic()
        if _is_token_major(spec):
            begin = self.shipped[layer]
            if end <= begin:
                return
            segments = engine.layer_segments(self.request_id, layer, begin, end)
            if self.encoder is not None:
                encoded, offset = self.encoder.encode(layer, segments, begin)
                self.handle.add_threadsafe(layer, [encoded], offset)
            else:
                per_token = spec.nbytes // self.n
                self.handle.add_threadsafe(layer, segments, begin * per_token)
            self.shipped[layer] = end
        elif end == self.n:
            self.handle.add_threadsafe(
                layer, engine.layer_segments(self.request_id, layer, 0, end), 0
            )


async def prefill_and_ship(
    compute: ComputeLoop,
    sender: KVSender,
    req: Request,
    destination: tuple[str, int],
    transfer_id: str,
    *,
    transfer_timeout_s: float = 120.0,
    kv_compression: str = "none",
) -> PrefillReport:
    """Run `req` (kind prefill_only) and ship its cache; raises PrefillFailed. Always frees the
    request's cache and the transfer before returning, also when cancelled. `kv_compression`
    (fp8, int8; prfaas/worker/kv_compression.py) ships the full-attention KV encoded."""
    rid, n = req.request_id, req.num_prompt_tokens
    arrived = time.monotonic()
    outputs = compute.subscribe(rid)
    handle = None
    added = False
    try:
        # Static in the prompt length (ExecutionBackend.transfer_layout), so read here rather than
        # through a compute-thread hop that would wait for the step in progress.
        layout = compute.engine.backend.transfer_layout(req)
        encoder = None
        on_wire = layout
        if kv_compression != "none":
            from prfaas.worker.kv_compression import KvEncoder  # torch: only when compressing

            encoder = KvEncoder(kv_compression, layout, n)
            on_wire = encoder.wire_layout
        handle = sender.open(destination, transfer_id, wire_layout(on_wire), rid.encode()[:256])
        shipper = _LayerShipper(compute, rid, layout, n, handle, encoder)
        compute.layer_hooks.register(rid, shipper)
        # Set before the await: a cancellation while the call is queued still lets the add run on
        # the compute thread, and only the abort queued behind it (finally) frees it again.
        added = True
        try:
            await compute.call(lambda e: e.add_request(req))
        except ValueError as exc:
            added = False  # refused (maybe a duplicate id: never abort the other request)
            raise PrefillFailed("refused", str(exc)) from exc
        while True:
            out = await outputs.get()
            if out.finished:
                break
        if out.status is not RequestStatus.FINISHED_STOPPED or not out.cache_held:
            raise PrefillFailed(
                "prefill_failed", out.error or f"prefill ended as {out.status.value}"
            )
        computed_at = time.monotonic()
        first_token = out.new_token_ids[-1]
        handle.finish(Handoff(first_token, n, out.num_cached_tokens).encode())
        try:
            await asyncio.wait_for(handle.wait_done(), transfer_timeout_s)
        except (TransferError, TimeoutError) as exc:
            raise PrefillFailed("kv_transfer_failed", f"{type(exc).__name__}: {exc}") from exc
        done_at = time.monotonic()
        # The compute began with the step that first took a chunk of it: the first layer's
        # hand-over comes one layer later (a quarter of a step at the emulator's GGGF), which the
        # queue wait must not count.
        started = req.compute_started_at or shipper.first_layer_done_at or computed_at
        return PrefillReport(
            first_token=first_token,
            num_prompt_tokens=n,
            num_cached_tokens=out.num_cached_tokens,
            queue_seconds=max(0.0, started - arrived),
            prefill_seconds=computed_at - started,
            transfer_seconds=done_at - started,
            exposed_transfer_seconds=done_at - computed_at,
            bytes_sent=sum(s.nbytes for s in on_wire),
            first_layer_seconds=max(0.0, (shipper.first_layer_done_at or started) - started),
        )
    except TransferError as exc:
        raise PrefillFailed("kv_transfer_failed", str(exc)) from exc
    finally:
        compute.layer_hooks.unregister(rid)
        compute.unsubscribe(rid, outputs)
        if handle is not None and not handle.state.terminal:
            handle.abort("prefill side gave up")
        if added:
            # Frees a held cache, or aborts a request still computing (cancellation).
            await asyncio.shield(compute.call(lambda e: e.abort(rid)))
