"""EngineCore: scheduler + hybrid prefix cache pool + one execution backend, stepped synchronously.

The worker owns one EngineCore and calls every method from its single compute thread (requests
arriving on other threads are queued by the worker and applied between steps). One `step()` is
schedule -> backend.execute -> scheduler.update.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from prfaas.checkpoint_rule import DEFAULT_CHECKPOINT_EVERY_BLOCKS
from prfaas.engine.block_pool import BlockPool
from prfaas.engine.execution_backend import BufferSpec, ExecutionBackend, LayerDoneCallback
from prfaas.engine.kv_manager import KVCacheManager
from prfaas.engine.outputs import RequestOutput, RunnerOutput
from prfaas.engine.prefix_cache import CacheListener, PrefixCache
from prfaas.engine.prefix_spans import PrefixSpan
from prfaas.engine.scheduler import RequestRefused, Scheduler, SchedulerConfig
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams

log = logging.getLogger(__name__)


class EngineCore:
    def __init__(
        self,
        backend: ExecutionBackend,
        *,
        cache_budget_bytes: int,
        max_num_batched_tokens: int = 2048,
        max_num_seqs: int = 64,
        max_model_len: int = 1 << 20,
        enable_prefix_cache: bool = True,
        checkpoint_every_blocks: int = DEFAULT_CHECKPOINT_EVERY_BLOCKS,
        cache_listener: CacheListener | None = None,
        on_layer_done: LayerDoneCallback | None = None,
    ) -> None:
        """`cache_budget_bytes` bounds KV blocks + live states + checkpoints together; the backend
        allocates memory for the most of each kind that budget could hold. `cache_listener`
        receives `CacheEvent`s (prefix blocks / checkpoints stored and evicted);
        `on_layer_done` is passed to every `execute` (layer-wise streaming)."""
        self.backend = backend
        self.pool = BlockPool(
            cache_budget_bytes, backend.block_bytes, backend.state_bytes_per_request
        )
        backend.allocate(self.pool.num_blocks, self.pool.num_slots)
        self.prefix_cache = PrefixCache(self.pool, cache_listener)
        kv = KVCacheManager(self.prefix_cache, backend.block_size, enable_prefix_cache)
        config = SchedulerConfig(
            max_num_batched_tokens=max_num_batched_tokens,
            max_num_seqs=max_num_seqs,
            block_size=backend.block_size,
            max_model_len=max_model_len,
            checkpoint_every_blocks=checkpoint_every_blocks,
        )
        self.scheduler = Scheduler(config, kv)
        self.on_layer_done = on_layer_done
        self.num_steps = 0
        # Seconds spent inside backend.execute (load reporting).
        self.busy_seconds = 0.0

    def add_request(self, req: Request) -> None:
        """Queue a request. Raises `RequestRefused` if it can never fit. A decode_only request is
        preallocated at once when there is room (status WAITING_FOR_KV; a PREALLOCATED output
        follows on the next step), otherwise as soon as room frees up. Token ids outside the
        backend's vocabulary are refused here, before they could fail a whole batch."""
        vocab = self.backend.prompt_vocab_size
        bad = next((t for t in req.prompt_token_ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise RequestRefused(
                f"request {req.request_id}: token id {bad} outside the vocabulary [0, {vocab})"
            )
        self.scheduler.add_request(req)

    def abort(self, request_id: str) -> bool:
        """Free a request at any stage (a held prefill_only request: its cache). Never between
        schedule and update: the worker calls it between steps."""
        return self.scheduler.abort(request_id)

    def release(self, request_id: str) -> None:
        """A prefill_only request's transfer is over (done or failed): free its cache."""
        self.scheduler.release(request_id)

    def mark_kv_ready(self, request_id: str, first_token: int) -> None:
        """The cache arrived; `first_token` came over the wire, so it is checked like a prompt id
        (an invalid one fails this request, with a FAILED output, instead of the next batch)."""
        if not 0 <= first_token < self.backend.prompt_vocab_size:
            self.scheduler.mark_kv_failed(
                request_id, f"shipped first token {first_token} outside the vocabulary"
            )
            return
        self.scheduler.mark_kv_ready(request_id, first_token)

    def mark_kv_failed(self, request_id: str, reason: str) -> None:
        self.scheduler.mark_kv_failed(request_id, reason)

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def step(self) -> list[RequestOutput]:
        """One schedule -> execute -> update. One bad request fails alone: a backend reports
        per-item failures in `RunnerOutput.failed`; when `execute` itself raises, the failure
        cannot be pinned on one item and the linear states of every request in the step may be
        half-updated (the recurrent update is not idempotent), so every request of that step
        fails with the error — never the worker, and never the same batch re-run forever."""
        sched = self.scheduler.schedule()
        if sched.is_empty:
            return self.scheduler.update(sched, RunnerOutput())
        started = time.monotonic()
        for chunk in sched.prefills:
            if chunk.request.compute_started_at is None:
                chunk.request.compute_started_at = started
        t0 = time.perf_counter()
        try:
            result = self.backend.execute(sched, self.on_layer_done)
        except Exception as exc:
            error = f"engine step failed: {type(exc).__name__}: {exc}"
            log.exception("step %d failed; failing its %d requests", self.num_steps,
                          len(sched.prefills) + len(sched.decodes))  # fmt: skip
            ids = [c.request.request_id for c in sched.prefills]
            ids += [d.request.request_id for d in sched.decodes]
            result = RunnerOutput(failed=dict.fromkeys(ids, error))
        self.busy_seconds += time.perf_counter() - t0
        self.num_steps += 1
        return self.scheduler.update(sched, result)

    def take_pending_outputs(self) -> list[RequestOutput]:
        """Outputs of calls applied between steps (`Scheduler.take_pending`)."""
        return self.scheduler.take_pending()

    def fail_all(self, error: str) -> list[RequestOutput]:
        return self.scheduler.fail_all(error)

    def _live(self, request_id: str) -> Request:
        req = self.scheduler.get_request(request_id)
        if req is None:
            raise KeyError(f"unknown request {request_id}")
        return req

    def transfer_layout(self, request_id: str) -> list[BufferSpec]:
        return self.backend.transfer_layout(self._live(request_id))

    def layer_segments(
        self, request_id: str, layer_idx: int, start: int, end: int
    ) -> list[memoryview]:
        """Views to ship for a running or held prefill_only request (valid until release)."""
        return self.backend.layer_segments(self._live(request_id), layer_idx, start, end)

    def receive_segments(self, request_id: str) -> list[list[memoryview]]:
        """Destination views of a decode_only request in WAITING_FOR_KV, per layer."""
        req = self._live(request_id)
        assert req.kind is RequestKind.DECODE_ONLY and req.state_slot is not None, (
            "not preallocated"
        )
        return self.backend.receive_segments(req)

    # Prefix export / import (prefix_spans.py). The worker's flows own each span from creation
    # to unpin / commit / abort, and always end it (also on failure and cancellation).

    def pin_prefix(self, span_id: str, token_ids: list[int]) -> PrefixSpan:
        """Pin exactly `token_ids` (whole blocks, checkpoint at the end) for export; raises
        `PrefixUnavailable` when not fully cached here. Views stay valid until `unpin_prefix`."""
        return self.scheduler.kv.transfers.pin(span_id, token_ids)

    def unpin_prefix(self, span_id: str) -> bool:
        return self.scheduler.kv.transfers.unpin(span_id)

    def reserve_prefix_import(self, span_id: str, token_ids: list[int]) -> PrefixSpan:
        """Private blocks + one state slot for an incoming prefix; raises `PrefixUnavailable`."""
        return self.scheduler.kv.transfers.reserve(span_id, token_ids)

    def commit_prefix_import(self, span_id: str) -> int:
        """Install a fully received prefix in the prefix cache (cache events follow); returns the
        usable cached length of that prefix now."""
        return self.scheduler.kv.transfers.commit(span_id)

    def abort_prefix_import(self, span_id: str) -> bool:
        return self.scheduler.kv.transfers.abort(span_id)

    def span_layout(self, span: PrefixSpan) -> list[BufferSpec]:
        """One buffer per layer for the span (full layers: its tokens; linear: one state)."""
        return self.backend.transfer_layout(span)

    def span_segments(self, span: PrefixSpan) -> list[list[memoryview]]:
        """Views of the span's cache per layer: read by a sender (pin) or written by a receiver
        (import reservation) until the span ends."""
        return self.backend.receive_segments(span)

    def prefill_backlog_seconds(self) -> float | None:
        """Predicted compute seconds of the prefill work this engine holds: for every prefill
        running or waiting, the backend's cost of its prompt tokens not computed yet (a waiting
        request's prefix hit is not known before admission: counted as uncached). None when the
        backend has no cost model. Compute thread only (reads the scheduler's queues)."""
        if self.backend.prefill_cost_seconds(0, 0, False) is None:
            return None  # asked even when idle: "no model" must not read as "no backlog"
        s = self.scheduler
        total = 0.0
        for req in (*s.running, *s.waiting):
            if req.kind is RequestKind.DECODE_ONLY or req.is_prefill_done:
                continue
            start = req.num_computed_tokens
            first = start == req.num_cached_tokens
            total += self.backend.prefill_cost_seconds(start, req.num_prompt_tokens, first) or 0.0
        return total

    def cache_usage(self) -> float:
        """Fraction of the byte budget taken (cached-but-evictable entries included)."""
        return self.pool.used_bytes / self.pool.budget_bytes

    def check_invariants(self) -> None:
        self.scheduler.check_invariants()

    def assert_no_leaks(self) -> None:
        """The full check (invariants of every queue and block), for tests."""
        self.scheduler.assert_no_leaks()

    def leak_report(self) -> str:
        """What an idle engine still holds that it should not ("" when nothing): the checks of
        `assert_no_leaks` without its invariant walk, for load reports."""
        return self.scheduler.leak_report()


def generate(
    engine: EngineCore,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    eos_token_id: int | None = None,
    id_prefix: str = "gen",
) -> list[list[int]]:
    """Run prompts to completion as `full` requests (tests and the in-process reference path)."""
    ids = [f"{id_prefix}-{i}" for i in range(len(prompts))]
    reqs = [
        Request(rid, list(p), params, eos_token_id=eos_token_id)
        for rid, p in zip(ids, prompts, strict=True)
    ]
    for req in reqs:
        engine.add_request(req)
    while any(not r.is_finished for r in reqs):
        engine.step()
    return [r.output_token_ids for r in reqs]
