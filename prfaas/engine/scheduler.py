"""Scheduler: which tokens of which requests run in the next step. No tensors, no networking.

Life of a request here (queues named as in the code):
1. `add_request`: refused with `RequestRefused` if it could never fit the cache budget; otherwise
   `waiting` (decode_only requests are preallocated at once when the cache has room).
2. Admission (in `schedule`, FIFO): take the prefix hit, the remaining blocks and a live state slot.
   full / prefill_only -> `running`; decode_only -> `waiting_for_kv` (status WAITING_FOR_KV), where
   it holds its destination blocks until `mark_kv_ready(first_token)` or `mark_kv_failed`.
   Seats (max_num_seqs, BS_max) count the running batch only: a decode_only request takes one
   when its KV has arrived, not while its prefill still waits in another worker's queue (its
   preallocation is bounded by memory alone). KV that arrives while every seat is taken waits in
   `kv_ready` (first token already emitted) and takes the next free seat before any new prefill.
3. Each step: every decoding request gets one token first, then prefill chunks fill the remaining
   token budget, so a long prompt never stalls running decodes. Chunk ends are block aligned (or
   the prompt end), so linear-state checkpoints land on block boundaries.
4. `update`: counters advance, full prompt blocks and checkpoints enter the prefix cache, sampled
   tokens are appended, finished requests free their cache. A prefill_only request finishes with
   its first token but moves to `held`, keeping its cache until `release` after its transfer.
`abort` frees a request at any stage. All methods run on the engine's single compute thread.
No preemption: admission reserves every block a request may write (see kv_manager.py).
`has_work` stays true while a request waits for memory, even if nothing can run yet; the worker
should back off when a step schedules nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from prfaas.checkpoint_rule import DEFAULT_CHECKPOINT_EVERY_BLOCKS, checkpoint_positions
from prfaas.engine.kv_manager import KVCacheManager
from prfaas.engine.outputs import (
    DecodeItem,
    PrefillChunk,
    RequestEvent,
    RequestOutput,
    RunnerOutput,
    SchedulerOutput,
)
from prfaas.request import Request, RequestKind, RequestStatus


class RequestRefused(ValueError):
    """The request can never be served by this engine (e.g. larger than the whole cache)."""


@dataclass(frozen=True)
class SchedulerConfig:
    # Tokens computed per step over all requests (decodes count one each).
    max_num_batched_tokens: int = 2048
    # Requests in `running` at once.
    max_num_seqs: int = 64
    block_size: int = 256
    # Longest prompt + output the backend supports.
    max_model_len: int = 1 << 20
    # Linear-state checkpoints inside prefill: the prompt end, the cached-KV junction and every this
    # many blocks (prfaas/checkpoint_rule.py; 1: every block, 0: never).
    checkpoint_every_blocks: int = DEFAULT_CHECKPOINT_EVERY_BLOCKS

    def __post_init__(self) -> None:
        assert self.block_size > 0 and self.max_num_seqs > 0
        # A whole block must fit one step, or block-aligned chunks could never be scheduled.
        assert self.max_num_batched_tokens >= self.block_size, "token budget below one block"


class Scheduler:
    def __init__(self, config: SchedulerConfig, kv: KVCacheManager) -> None:
        assert kv.block_size == config.block_size
        self.config = config
        self.kv = kv
        self.requests: dict[str, Request] = {}
        self.waiting: deque[Request] = deque()
        self.waiting_for_kv: dict[str, Request] = {}
        self.running: list[Request] = []
        # KV arrived, first token emitted, every seat taken: decodes when a seat frees.
        self.kv_ready: deque[Request] = deque()
        self.held: dict[str, Request] = {}
        self._pending: list[RequestOutput] = []
        self._step_id = 0

    def add_request(self, req: Request) -> None:
        if req.request_id in self.requests:
            raise RequestRefused(f"duplicate request id {req.request_id}")
        if req.max_cache_tokens + 1 > self.config.max_model_len:
            raise RequestRefused(
                f"request {req.request_id}: {req.num_prompt_tokens} prompt + "
                f"{req.sampling_params.max_tokens} output tokens exceed max_model_len "
                f"{self.config.max_model_len}"
            )
        reason = self.kv.never_fits(req)
        if reason is not None:
            raise RequestRefused(reason)
        self.requests[req.request_id] = req
        self.waiting.append(req)
        if req.kind is RequestKind.DECODE_ONLY:
            self._admit_decode_only()

    def _admit_decode_only(self) -> None:
        # Preallocation does not wait behind prefills: its memory is what lets a transfer start.
        # It takes no seat: a request whose prefill is still queued elsewhere does not decode, and
        # counting it against BS_max filled the seats with queued prefills (issue 12).
        for req in [r for r in self.waiting if r.kind is RequestKind.DECODE_ONLY]:
            if self.kv.allocate(req) is None:
                return
            self.waiting.remove(req)
            req.status = RequestStatus.WAITING_FOR_KV
            self.waiting_for_kv[req.request_id] = req
            self._pending.append(
                RequestOutput(req.request_id, req.status, event=RequestEvent.PREALLOCATED)
            )

    @property
    def _num_seqs(self) -> int:
        """Requests holding a seat: the running batch."""
        return len(self.running)

    @property
    def num_with_kv(self) -> int:
        """Requests whose KV is complete here: the running batch and those waiting for a seat
        (`kv_ready`), as `WorkerLoad.num_running` reports them; decode admission bounds it
        (worker/seat_line.py)."""
        return len(self.running) + len(self.kv_ready)

    def _seat_kv_ready(self) -> None:
        """Requests whose KV arrived take free seats first (FIFO), before any new prefill."""
        while self.kv_ready and self._num_seqs < self.config.max_num_seqs:
            self.running.append(self.kv_ready.popleft())

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.kv_ready or self._pending)

    def schedule(self) -> SchedulerOutput:
        self._step_id += 1
        out = SchedulerOutput(self._step_id)
        self._admit_decode_only()
        self._seat_kv_ready()
        budget = self.config.max_num_batched_tokens
        for req in self.running:
            if req.is_prefill_done and budget > 0:
                out.decodes.append(DecodeItem(req, req.last_token_id, req.num_computed_tokens))
                budget -= 1
        for req in self.running:
            if not req.is_prefill_done:
                budget -= self._schedule_chunk(req, budget, out, None)
        while self.waiting and self._num_seqs < self.config.max_num_seqs:
            req = self.waiting[0]
            if req.kind is RequestKind.DECODE_ONLY:
                break
            chunk_len = self._chunk_len(req.num_prompt_tokens, 0, budget)
            if chunk_len == 0:
                break
            hit = self.kv.allocate(req)
            if hit is None:
                # Head of line waits for memory; later requests wait behind it (no starvation).
                break
            self.waiting.popleft()
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            budget -= self._schedule_chunk(req, budget, out, hit.checkpoint_slot)
        return out

    def _chunk_len(self, num_prompt: int, start: int, budget: int) -> int:
        end = min(num_prompt, start + budget)
        if end < num_prompt:
            end = end // self.config.block_size * self.config.block_size
        return max(0, end - start)

    def _schedule_chunk(
        self, req: Request, budget: int, out: SchedulerOutput, copy_from: int | None
    ) -> int:
        start = req.num_computed_tokens
        n = self._chunk_len(req.num_prompt_tokens, start, budget)
        if n == 0:
            # A hit's pinned checkpoint is only taken together with a first chunk.
            assert copy_from is None
            return 0
        chunk = PrefillChunk(req, start, start + n, copy_state_from=copy_from)
        if self.kv.enable_prefix_cache:
            points = checkpoint_positions(
                start,
                chunk.end,
                req.num_prompt_tokens,
                self.config.block_size,
                self.config.checkpoint_every_blocks,
                self.kv.junction(req),
            )
            for pos in points:
                slot = self.kv.take_checkpoint_slot()
                if slot is None:
                    break
                chunk.checkpoints.append((pos, slot))
        out.prefills.append(chunk)
        return n

    def update(self, sched: SchedulerOutput, result: RunnerOutput) -> list[RequestOutput]:
        outputs, self._pending = self._pending, []
        for chunk in sched.prefills:
            req = chunk.request
            live = self.requests.get(req.request_id) is req and req.status is RequestStatus.RUNNING
            if live and req.request_id in result.failed:
                # Its cache range was not (fully) computed: nothing of this chunk is committed.
                self._fail(req, result.failed[req.request_id], outputs)
                live = False
            if chunk.copy_state_from is not None:
                self.kv.cache.release_slot(chunk.copy_state_from)
            for pos, slot in chunk.checkpoints:
                if live:
                    self.kv.commit_checkpoint(req, pos, slot)
                else:
                    self.kv.cache.release_slot(slot)
            if not live:
                continue
            req.num_computed_tokens = chunk.end
            self.kv.commit_computed(req)
            if chunk.is_last:
                outputs.append(self._append_token(req, result.sampled_token_ids[req.request_id]))
        for item in sched.decodes:
            req = item.request
            if (
                self.requests.get(req.request_id) is not req
                or req.status is not RequestStatus.RUNNING
            ):
                continue
            if req.request_id in result.failed:
                self._fail(req, result.failed[req.request_id], outputs)
                continue
            req.num_computed_tokens += 1
            outputs.append(self._append_token(req, result.sampled_token_ids[req.request_id]))
        return outputs

    def _append_token(self, req: Request, token: int) -> RequestOutput:
        req.output_token_ids.append(token)
        if req.kind is RequestKind.PREFILL_ONLY:
            # Its part is done: the decode side applies stop rules to the first token again.
            self.running.remove(req)
            req.status = RequestStatus.FINISHED_STOPPED
            self.held[req.request_id] = req
            return RequestOutput(
                req.request_id,
                req.status,
                [token],
                num_cached_tokens=req.num_cached_tokens,
                cache_held=True,
            )
        stop = req.stop_status()
        if stop is not None:
            self._finish(req, stop)
        req.check_invariants()
        return RequestOutput(
            req.request_id, req.status, [token], num_cached_tokens=req.num_cached_tokens
        )

    def _finish(self, req: Request, status: RequestStatus, error: str | None = None) -> None:
        """Move a live request out of every queue and free its cache."""
        if req in self.running:
            self.running.remove(req)
        elif req in self.kv_ready:
            self.kv_ready.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        self.waiting_for_kv.pop(req.request_id, None)
        self.held.pop(req.request_id, None)
        self.kv.free(req)
        req.status = status
        req.error = error
        del self.requests[req.request_id]

    def _fail(self, req: Request, error: str, outputs: list[RequestOutput]) -> None:
        self._finish(req, RequestStatus.FAILED, error)
        outputs.append(RequestOutput(req.request_id, req.status, error=error))

    def fail_all(self, error: str) -> list[RequestOutput]:
        """Fail every waiting and running request: the last resort when the engine's own
        bookkeeping raised and no computing request can be trusted. Requests whose memory a
        transfer still reads or writes (held prefill_only, decode_only waiting for KV) are left to
        their owners, who abort the transfer before freeing it."""
        outputs, self._pending = self._pending, []
        for req in [*self.waiting, *self.running, *self.kv_ready]:
            self._fail(req, error, outputs)
        return outputs

    def abort(self, request_id: str) -> bool:
        """Free the request at any stage; False if unknown or already gone. A finished-and-held
        prefill_only request is released (its transfer was cancelled)."""
        req = self.requests.get(request_id)
        if req is None:
            return False
        if request_id in self.held:
            self._finish(req, req.status)
            return True
        self._finish(req, RequestStatus.FINISHED_ABORTED)
        self._pending.append(RequestOutput(request_id, req.status))
        return True

    def release(self, request_id: str) -> None:
        """Free a finished prefill_only request's cache once its transfer is done (or failed)."""
        req = self.held.get(request_id)
        if req is None:
            raise KeyError(f"request {request_id} is not a held prefill_only request")
        self._finish(req, req.status)

    def mark_kv_ready(self, request_id: str, first_token: int) -> None:
        """The transfer wrote the whole prompt's cache; decoding starts after `first_token`
        (at once with a free seat, else in `kv_ready` until one frees)."""
        req = self.waiting_for_kv.pop(request_id)
        req.num_computed_tokens = req.num_prompt_tokens
        req.status = RequestStatus.RUNNING
        if self._num_seqs < self.config.max_num_seqs:
            self.running.append(req)
        else:
            self.kv_ready.append(req)
        self._pending.append(self._append_token(req, first_token))

    def mark_kv_failed(self, request_id: str, reason: str) -> None:
        req = self.waiting_for_kv[request_id]
        self._finish(req, RequestStatus.FAILED, reason)
        self._pending.append(RequestOutput(request_id, req.status, error=reason))

    def take_pending(self) -> list[RequestOutput]:
        """Outputs produced between steps (preallocated, aborted, a first token shipped with the
        KV), for the worker to deliver at once instead of after the next step: with an 0.8 s
        decode step, waiting for `update` cost a whole step per admission and per first token
        (issue 12 item 2)."""
        outputs, self._pending = self._pending, []
        return outputs

    def get_request(self, request_id: str) -> Request | None:
        return self.requests.get(request_id)

    def check_invariants(self) -> None:
        live = list(self.requests.values())
        queued = (
            list(self.waiting)
            + self.running
            + list(self.kv_ready)
            + list(self.waiting_for_kv.values())
            + list(self.held.values())
        )
        assert sorted(id(r) for r in queued) == sorted(id(r) for r in live), "queues disagree"
        for r in live:
            r.check_invariants()
        self.kv.check_invariants(live)

    def leak_report(self) -> str:
        """What an idle scheduler still holds that it should not ("" when nothing). Cheap enough
        for load reports: the reference-count scans run in C, no Python loop per block."""
        if self.requests:
            return f"live requests: {list(self.requests)[:8]}"
        spans = [s.span_id for s in self.kv.transfers.held()]
        if spans:
            return f"prefix export/import spans held: {spans[:8]}"
        pool = self.kv.pool
        if any(pool.block_refs):
            return "block references leaked"
        if any(pool.slot_refs):
            return "slot references leaked"
        if pool.used_bytes != self.kv.cache.evictable_bytes:
            return "uncached entries not freed"
        return ""

    def assert_no_leaks(self) -> None:
        """Idle engine: no live requests, every reference dropped, only cached entries in use;
        plus every queue and block invariant (tests)."""
        self.check_invariants()
        report = self.leak_report()
        assert not report, report
