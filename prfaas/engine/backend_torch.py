"""Torch backend: the real hybrid model over a `HybridCache` sized by the engine's pool.

Prefill runs one chunk per request per call (`HybridModel.prefill`), writing the linear-state
checkpoints the scheduler asked for straight into their pool slots; decode items run as one batch
(`HybridModel.decode`). Sampling follows `prfaas.model.sampler` with one generator per request.
Handoff ("first token shipped"): a prefill_only request's last chunk samples the first token; the
views from `layer_segments` then hold KV[0, N) and the linear states after N tokens.
"""

from __future__ import annotations

import time
import weakref

import torch

from prfaas.engine.execution_backend import (
    BufferSpec,
    CacheSpan,
    ExecutionBackend,
    LayerDoneCallback,
)
from prfaas.engine.outputs import PrefillChunk, RunnerOutput, SchedulerOutput
from prfaas.model import layout
from prfaas.model.cache import HybridCache, LinearStates, SeqCache
from prfaas.model.hybrid import HybridModel
from prfaas.model.sampler import make_generator, sample_one
from prfaas.request import Request


class TorchBackend(ExecutionBackend):
    def __init__(self, model: HybridModel, *, block_size: int = 256) -> None:
        self.model = model
        self.config = model.config
        self.block_size = block_size
        self.num_layers = self.config.num_layers
        self.kv_bytes_per_token = self.config.kv_bytes_per_token
        self.state_bytes_per_request = self.config.state_bytes_per_request
        self.prompt_vocab_size = self.config.vocab_size
        # Per-request RNG for seeded sampling; dies with the Request object.
        self._generators: weakref.WeakKeyDictionary[Request, torch.Generator | None] = (
            weakref.WeakKeyDictionary()
        )
        self.cache: HybridCache | None = None

    def allocate(self, num_blocks: int, num_slots: int) -> None:
        # Zero-filled, so every page of the cache budget is committed now: no page faults on the
        # serving path the first time a block is written, and the process's memory is flat from
        # the start (a soak's RSS slope then shows leaks, not the cache filling up).
        self.cache = HybridCache(
            self.config,
            num_blocks,
            num_slots,
            block_size=self.block_size,
            device=self.model.device,
            fill=0.0,
        )

    def _cache(self) -> HybridCache:
        assert self.cache is not None, "allocate() first"
        return self.cache

    def _sample(self, req: Request, logits: torch.Tensor) -> int:
        params = req.sampling_params
        if req not in self._generators:
            self._generators[req] = make_generator(params, self.model.device)
        return sample_one(logits, params, self._generators[req])

    def _prefill(
        self, chunk: PrefillChunk, on_layer_done: LayerDoneCallback | None
    ) -> torch.Tensor:
        cache, req = self._cache(), chunk.request
        assert req.state_slot is not None
        if chunk.copy_state_from is not None:
            cache.copy_state(chunk.copy_state_from, req.state_slot)
        slots = dict(chunk.checkpoints)

        def sink(pos: int, states: LinearStates) -> None:
            cache.write_state(slots[pos], states)

        def layer_done(layer: int, start: int, end: int) -> None:
            if on_layer_done is not None:
                on_layer_done(req.request_id, layer, start, end)

        tokens = torch.tensor(req.prompt_token_ids[chunk.start : chunk.end], dtype=torch.long)
        return self.model.prefill(
            tokens,
            cache,
            SeqCache(req.block_table, req.state_slot, chunk.start),
            on_layer_done=layer_done,
            # The scheduler's positions (prfaas/checkpoint_rule.py), in increasing order.
            checkpoint_positions=sorted(slots),
            checkpoint_sink=sink if slots else None,
        )

    def execute(
        self, sched: SchedulerOutput, on_layer_done: LayerDoneCallback | None = None
    ) -> RunnerOutput:
        t0 = time.perf_counter()
        out = RunnerOutput()
        # Each prefill chunk touches only its own request's blocks and slots, and sampling only its
        # own generator, so a failure there is that request's alone (reported, not raised). The
        # batched decode forward is not attributable: it raises and the engine fails the step.
        for chunk in sched.prefills:
            rid = chunk.request.request_id
            try:
                logits = self._prefill(chunk, on_layer_done)
                if chunk.is_last:
                    out.sampled_token_ids[rid] = self._sample(chunk.request, logits)
            except Exception as exc:
                out.failed[rid] = f"prefill failed: {type(exc).__name__}: {exc}"
        if sched.decodes:
            tokens = torch.tensor([d.token_id for d in sched.decodes], dtype=torch.long)
            seqs = [
                SeqCache(d.request.block_table, d.request.state_slot or 0, d.position)
                for d in sched.decodes
            ]
            logits = self.model.decode(tokens, self._cache(), seqs)
            for b, item in enumerate(sched.decodes):
                req = item.request
                try:
                    out.sampled_token_ids[req.request_id] = self._sample(req, logits[b])
                except Exception as exc:
                    out.failed[req.request_id] = f"sampling failed: {type(exc).__name__}: {exc}"
        out.compute_seconds = time.perf_counter() - t0
        return out

    def copy_state(self, src_slot: int, dst_slot: int) -> None:
        self._cache().copy_state(src_slot, dst_slot)

    def transfer_layout(self, req: CacheSpan) -> list[BufferSpec]:
        specs = layout.transfer_layout(self.config, req.num_prompt_tokens)
        return [BufferSpec(s.name, s.dtype, s.nbytes) for s in specs]

    def layer_segments(
        self, req: CacheSpan, layer_idx: int, start: int, end: int
    ) -> list[memoryview]:
        assert req.state_slot is not None, "request holds no cache"
        seq = SeqCache(req.block_table, req.state_slot, req.num_computed_tokens)
        return layout.layer_segments(self._cache(), layer_idx, seq, start, end)
