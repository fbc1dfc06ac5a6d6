"""Emulated backend: profiled prefill durations and cache sizes, real bytes, no model.

Lets a dozen workers run on a 2-core machine in the paper's regime (issue 4 item 6):
- time: a prefill of N tokens takes profile.seconds(N) * time_factor, slept layer by layer so
  layer-done events spread over the prefill; a chunk [s, e) of a request costs
  P(e) - P(s), plus P(0) (the fixed per-request overhead) on the request's first chunk;
  a decode step takes decode_step_seconds * time_factor;
- bytes: profile.bytes(N) = state + N * per_token (fitted), scaled by byte_factor, held in
  bytearrays laid out like the model's cache (per full layer: blocks of per-token bytes; per linear
  layer: one state buffer per slot), so the worker really sends them over TCP;
- tokens: `hash_next_token` of the sequence, identical on every path (local, remote, prefix hit).
Written bytes are a function of the tokens, so a transfer's digest means something.
- KV dtype (`kv_dtype`): "uint8" declares the full-attention KV as opaque bytes; a float dtype
  (bfloat16, float16, float32) declares it as rows of that dtype, holding float values, with the
  per-token bytes of a layer rounded to whole `KV_GROUP`-element groups (at least one), so the
  workers' `--kv-compression` codec can encode it on the line (issue 16 item 2's experiment).
The profile is the planner's `PrefillProfile` (one type, one interpolation for both).
"""

from __future__ import annotations

import math
import time

import numpy as np
import xxhash

from prfaas.engine.execution_backend import (
    BufferSpec,
    CacheSpan,
    ExecutionBackend,
    LayerDoneCallback,
    hash_next_token,
)
from prfaas.engine.outputs import PrefillChunk, RunnerOutput, SchedulerOutput
from prfaas.planner.profiles import PrefillProfile
from prfaas.request import Request

KV_DTYPES = {"uint8": 1, "bfloat16": 2, "float16": 2, "float32": 4}
"""Declarable KV dtypes and their element bytes."""
KV_GROUP = 64
"""Elements a float KV row is a multiple of (the line codec's scale group, model/kv_codec.py)."""
BACK_TO_BACK_S = 0.05
"""A step that starts within this long of the previous step's planned end is timed from that end,
not from its own start: the accelerator stays busy while the host schedules the next step (as
engines that overlap scheduling with execution do), so the emulator's between-step Python (the
scheduler's update, output delivery, a late wake-up on a loaded CPU: about 6 ms of a 117 ms
prefill step, 5 %, measured at load up to 6) does not add to the profile's time. After a longer
pause (the engine was idle) a step is timed from its own start, so no step gets more than this
much for free."""


class EmulatedBackend(ExecutionBackend):
    def __init__(
        self,
        profile: PrefillProfile,
        *,
        time_factor: float = 1.0,
        byte_factor: float = 1e-3,
        layer_pattern: str = "GGGF",
        block_size: int = 256,
        decode_step_seconds: float = 0.025,
        vocab_size: int = 256,
        kv_dtype: str = "uint8",
    ) -> None:
        if kv_dtype not in KV_DTYPES:
            raise ValueError(f"emulated KV dtype {kv_dtype!r}: one of {', '.join(KV_DTYPES)}")
        self.profile = profile
        self.kv_dtype = kv_dtype
        self.time_factor = time_factor
        self.layer_pattern = layer_pattern
        self.num_layers = len(layer_pattern)
        self.full_layers = [i for i, k in enumerate(layer_pattern) if k == "F"]
        self.linear_layers = [i for i, k in enumerate(layer_pattern) if k == "G"]
        assert self.full_layers and self.linear_layers, "pattern needs both layer kinds"
        self.block_size = block_size
        self.decode_step_seconds = decode_step_seconds
        self.vocab_size = vocab_size
        # Per-layer byte sizes, at least one byte each so every layer really ships something.
        kv = profile.kv_bytes_per_token * byte_factor / len(self.full_layers)
        state = profile.state_bytes * byte_factor / len(self.linear_layers)
        self.token_bytes_per_layer = max(1, round(kv))
        if kv_dtype != "uint8":  # whole scale groups of float elements
            group_bytes = KV_GROUP * KV_DTYPES[kv_dtype]
            self.token_bytes_per_layer = group_bytes * max(1, round(kv / group_bytes))
        self.state_bytes_per_layer = max(1, round(state))
        self.kv_bytes_per_token = self.token_bytes_per_layer * len(self.full_layers)
        self.state_bytes_per_request = self.state_bytes_per_layer * len(self.linear_layers)
        self._ordinal = {layer: i for i, layer in enumerate(self.full_layers)}
        self._ordinal.update({layer: j for j, layer in enumerate(self.linear_layers)})
        self._planned_end = -math.inf
        """perf_counter time the last step was due to end (`BACK_TO_BACK_S`)."""

    def allocate(self, num_blocks: int, num_slots: int) -> None:
        # kv[i]: [num_blocks, block_size, token_bytes]; state[j]: [num_slots, state_bytes].
        # np.full touches every page now, so first writes inside a timed step do not page-fault.
        kv_shape = (num_blocks, self.block_size, self.token_bytes_per_layer)
        self.kv = [np.full(kv_shape, 0, np.uint8) for _ in self.full_layers]
        state_shape = (num_slots, self.state_bytes_per_layer)
        self.state = [np.full(state_shape, 0, np.uint8) for _ in self.linear_layers]

    def prefill_seconds(self, chunk: PrefillChunk) -> float:
        """Emulated (scaled) duration of one chunk."""
        first = chunk.start == chunk.request.num_cached_tokens
        return self.prefill_cost_seconds(chunk.start, chunk.end, first)

    def prefill_cost_seconds(self, start: int, end: int, first_chunk: bool) -> float:
        p = self.profile
        cost = p.seconds(end) - p.seconds(start) + (p.seconds(0) if first_chunk else 0.0)
        return cost * self.time_factor

    def _write_kv(self, layer: int, req: Request, tokens: list[int], start: int) -> None:
        kv = self.kv[self._ordinal[layer]]
        bs = self.block_size
        vals = (np.asarray(tokens, dtype=np.int64) + layer) % 256
        rows = vals[:, None] if self.kv_dtype == "uint8" else self._float_rows(vals)
        t = start
        while t < start + len(tokens):
            off, n = t % bs, min(bs - t % bs, start + len(tokens) - t)
            kv[req.block_table[t // bs], off : off + n, :] = rows[t - start : t - start + n]
            t += n

    def _float_rows(self, vals: np.ndarray) -> np.ndarray:
        """uint8 [n, token_bytes]: per token, a row of `kv_dtype` floats that vary along the row
        (in [-8, 8), a function of the token), as the cache's bytes."""
        elements = self.token_bytes_per_layer // KV_DTYPES[self.kv_dtype]
        x = ((vals[:, None] + np.arange(elements)) % 256 - 128).astype(np.float32) / 16.0
        if self.kv_dtype == "bfloat16":  # the high half of each float32 (exact: 8 mantissa bits)
            x = (x.view(np.uint32) >> 16).astype(np.uint16)
        elif self.kv_dtype == "float16":
            x = x.astype(np.float16)
        return np.ascontiguousarray(x).view(np.uint8).reshape(len(vals), -1)

    def _write_state(self, layer: int, slot: int, digest: int) -> None:
        self.state[self._ordinal[layer]][slot, :] = (digest + layer) % 256

    def execute(
        self, sched: SchedulerOutput, on_layer_done: LayerDoneCallback | None = None
    ) -> RunnerOutput:
        t0 = time.perf_counter()
        out = RunnerOutput()
        for chunk in sched.prefills:
            if chunk.copy_state_from is not None:
                assert chunk.request.state_slot is not None, "a scheduled prefill holds a slot"
                self.copy_state(chunk.copy_state_from, chunk.request.state_slot)
        # Sampled up front so no real work runs after the last layer's deadline.
        for chunk in sched.prefills:
            if chunk.is_last:
                token = hash_next_token(chunk.request.prompt_token_ids, self.vocab_size)
                out.sampled_token_ids[chunk.request.request_id] = token
        per_layer = sum(self.prefill_seconds(c) for c in sched.prefills) / self.num_layers
        # Linear states after `end` and after each checkpoint position, as content digests.
        digests = [_prefix_digests(c) for c in sched.prefills]
        back_to_back = t0 - self._planned_end < BACK_TO_BACK_S
        deadline = self._planned_end if back_to_back else t0
        for layer in range(self.num_layers):
            deadline += per_layer
            for chunk, (end_digest, ckpt_digests) in zip(sched.prefills, digests, strict=True):
                req = chunk.request
                if self.layer_pattern[layer] == "F":
                    tokens = req.prompt_token_ids[chunk.start : chunk.end]
                    self._write_kv(layer, req, tokens, chunk.start)
                else:
                    assert req.state_slot is not None, "a scheduled prefill holds a slot"
                    self._write_state(layer, req.state_slot, end_digest)
                    for (_, slot), digest in zip(chunk.checkpoints, ckpt_digests, strict=True):
                        self._write_state(layer, slot, digest)
            _sleep_until(deadline)
            if on_layer_done is not None:
                for chunk in sched.prefills:
                    on_layer_done(chunk.request.request_id, layer, chunk.start, chunk.end)
        if sched.decodes:
            for item in sched.decodes:
                req = item.request
                seq = req.all_token_ids
                for layer in self.full_layers:
                    self._write_kv(layer, req, [item.token_id], item.position)
                digest = _digest(np.asarray(seq, dtype="<i4"))
                assert req.state_slot is not None, "a scheduled decode holds a slot"
                for layer in self.linear_layers:
                    self._write_state(layer, req.state_slot, digest)
                out.sampled_token_ids[req.request_id] = hash_next_token(seq, self.vocab_size)
            # The step's deadline runs from when the decode part began (`deadline`: the last
            # prefill layer's, or the step's start), so the emulator's own bookkeeping above
            # (cache writes, content digests: milliseconds per sequence on a loaded CPU) is inside
            # the step, as a GPU's work is; sleeping a whole step after it made a batch of 60
            # step 16 % slow.
            deadline += self.decode_step_seconds * self.time_factor
            _sleep_until(deadline)
        self._planned_end = deadline
        out.compute_seconds = time.perf_counter() - t0
        return out

    def copy_state(self, src_slot: int, dst_slot: int) -> None:
        for s in self.state:
            s[dst_slot] = s[src_slot]

    def transfer_layout(self, req: CacheSpan) -> list[BufferSpec]:
        n = req.num_prompt_tokens
        return [
            BufferSpec(f"L{i:02d}.kv", self.kv_dtype, n * self.token_bytes_per_layer)
            if kind == "F"
            else BufferSpec(f"L{i:02d}.state", "uint8", self.state_bytes_per_layer)
            for i, kind in enumerate(self.layer_pattern)
        ]

    def layer_segments(
        self, req: CacheSpan, layer_idx: int, start: int, end: int
    ) -> list[memoryview]:
        if self.layer_pattern[layer_idx] != "F":
            assert req.state_slot is not None
            return [self.state[self._ordinal[layer_idx]][req.state_slot].data]
        kv = self.kv[self._ordinal[layer_idx]]
        bs, views, t = self.block_size, [], start
        while t < end:
            off, n = t % bs, min(bs - t % bs, end - t)
            views.append(kv[req.block_table[t // bs], off : off + n].data.cast("B"))
            t += n
        return views


def _digest(tokens: np.ndarray) -> int:
    return xxhash.xxh3_64_intdigest(tokens.tobytes())


def _prefix_digests(chunk: PrefillChunk) -> tuple[int, list[int]]:
    """Digest of the prompt prefix ending at chunk.end and at each checkpoint position."""
    arr = np.asarray(chunk.request.prompt_token_ids, dtype="<i4")
    return _digest(arr[: chunk.end]), [_digest(arr[:pos]) for pos, _ in chunk.checkpoints]


def _sleep_until(deadline: float) -> None:
    left = deadline - time.perf_counter()
    if left > 0:
        time.sleep(left)
