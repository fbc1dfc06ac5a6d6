"""ExecutionBackend: the device side of the engine (what runs a `SchedulerOutput`).

Threading: every method runs on the worker's single compute thread, the same thread that calls
the scheduler; `execute` blocks for the whole step. Views returned by `layer_segments` /
`receive_segments` may be read or written from a transfer thread while the request holds its
blocks (the scheduler guarantees nobody else writes them until the request is freed/released).

Ownership: the backend owns the cache *memory* (`allocate` sizes it once); the engine's
`KVCacheManager` owns which blocks/slots belong to whom. The backend never frees anything.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import xxhash

from prfaas.engine.outputs import RunnerOutput, SchedulerOutput
from prfaas.tokenizer.special_tokens import NUM_TOKENIZER_IDS

# on_layer_done(request_id, layer_idx, start_token, end_token): called on the compute thread as
# soon as that layer's cache for tokens [start, end) of the request is written (for a linear
# layer: its state after `end` tokens). Must not block: hand the views to a sender queue.
LayerDoneCallback = Callable[[str, int, int, int], None]


class CacheSpan(Protocol):
    """What the view methods read of a cache owner: a `Request`, or a prefix pinned for export /
    reserved for import (`prfaas.engine.prefix_spans.PrefixSpan`). Its prompt is the span."""

    @property
    def block_table(self) -> list[int]: ...
    @property
    def state_slot(self) -> int | None: ...
    @property
    def num_prompt_tokens(self) -> int: ...
    @property
    def num_computed_tokens(self) -> int: ...


@dataclass(frozen=True)
class BufferSpec:
    """One layer's logical transfer buffer (the concatenation of its segments)."""

    name: str  # "L03.kv" (full attention) or "L00.state" (linear)
    dtype: str
    nbytes: int


def hash_next_token(token_ids: list[int], vocab_size: int) -> int:
    """A deterministic stand-in for sampling: depends on every token so far, so the same sequence
    gives the same "generated" tokens on every path (local, remote prefill, prefix hit)."""
    digest = xxhash.xxh3_64_intdigest(np.asarray(token_ids, dtype="<i4").tobytes())
    return digest % vocab_size


class ExecutionBackend(ABC):
    """Runs steps and exposes the cache bytes. Subclasses set the cost numbers below."""

    block_size: int
    num_layers: int
    # Full-attention KV bytes of one token over all full layers.
    kv_bytes_per_token: int
    # Linear state (recurrent + conv, all linear layers) of one request or checkpoint.
    state_bytes_per_request: int
    # Token ids a prompt (or a shipped first token) may hold: [0, prompt_vocab_size). The engine
    # refuses anything else at admission, so a bad id never reaches a batch.
    prompt_vocab_size: int = NUM_TOKENIZER_IDS

    @property
    def block_bytes(self) -> int:
        return self.block_size * self.kv_bytes_per_token

    def prefill_cost_seconds(self, start: int, end: int, first_chunk: bool) -> float | None:
        """Predicted compute seconds of prompt tokens [start, end) of one request (`first_chunk`:
        its first computed chunk, which carries the per-request overhead), or None when this
        backend has no cost model (the torch backend: its speed is measured, not predicted). Read
        by `EngineCore.prefill_backlog_seconds` for the worker's load report."""
        return None

    @abstractmethod
    def allocate(self, num_blocks: int, num_slots: int) -> None:
        """Create the cache memory, once, before the first `execute` (the pool's sizes)."""

    @abstractmethod
    def execute(
        self, sched: SchedulerOutput, on_layer_done: LayerDoneCallback | None = None
    ) -> RunnerOutput:
        """Run one step: for each prefill chunk copy `copy_state_from` into the live slot first,
        compute [start, end), write `checkpoints`, and sample when `is_last`; feed each decode
        item and sample. Blocks until done. Must not mutate requests (the scheduler does)."""

    @abstractmethod
    def copy_state(self, src_slot: int, dst_slot: int) -> None:
        """Copy a linear state between slots (checkpoint install / export)."""

    @abstractmethod
    def transfer_layout(self, req: CacheSpan) -> list[BufferSpec]:
        """One spec per model layer for the request's prompt (its num_prompt_tokens tokens). A
        function of the prompt length and the backend's fixed configuration only: workers call
        it from their event loop, outside the compute thread."""

    @abstractmethod
    def layer_segments(
        self, req: CacheSpan, layer_idx: int, start: int, end: int
    ) -> list[memoryview]:
        """Zero-copy views of one layer's cache for tokens [start, end) (a linear layer: its whole
        state; the range is ignored). Valid while the request holds its blocks."""

    def receive_segments(self, req: CacheSpan) -> list[list[memoryview]]:
        """Destination views, per layer, for a preallocated decode_only request's whole prompt."""
        n = req.num_prompt_tokens
        return [self.layer_segments(req, layer, 0, n) for layer in range(self.num_layers)]


class NullBackend(ExecutionBackend):
    """Instant, byte-free backend for scheduler tests: tokens from `hash_next_token`."""

    def __init__(
        self, block_size: int = 64, kv_bytes_per_token: int = 16, state_bytes: int = 1024
    ) -> None:
        self.block_size = block_size
        self.num_layers = 1
        self.kv_bytes_per_token = kv_bytes_per_token
        self.state_bytes_per_request = state_bytes
        self.vocab_size = 256
        # Scheduler tests use plain ranges as prompts; any non-negative id is a valid input here.
        self.prompt_vocab_size = 1 << 31
        self.num_steps = 0

    def allocate(self, num_blocks: int, num_slots: int) -> None:
        self.num_blocks, self.num_slots = num_blocks, num_slots

    def execute(
        self, sched: SchedulerOutput, on_layer_done: LayerDoneCallback | None = None
    ) -> RunnerOutput:
        t0 = time.perf_counter()
        self.num_steps += 1
        out = RunnerOutput()
        for chunk in sched.prefills:
            req = chunk.request
            if on_layer_done is not None:
                on_layer_done(req.request_id, 0, chunk.start, chunk.end)
            if chunk.is_last:
                out.sampled_token_ids[req.request_id] = hash_next_token(
                    req.prompt_token_ids, self.vocab_size
                )
        for item in sched.decodes:
            tokens = item.request.all_token_ids
            out.sampled_token_ids[item.request.request_id] = hash_next_token(
                tokens, self.vocab_size
            )
        out.compute_seconds = time.perf_counter() - t0
        return out

    def copy_state(self, src_slot: int, dst_slot: int) -> None:
        pass

    def transfer_layout(self, req: CacheSpan) -> list[BufferSpec]:
        return [BufferSpec("L00.kv", "uint8", 0)]

    def layer_segments(
        self, req: CacheSpan, layer_idx: int, start: int, end: int
    ) -> list[memoryview]:
        return []
