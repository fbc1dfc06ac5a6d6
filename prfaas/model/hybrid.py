"""The hybrid-attention language model and the two entry points the engine calls.

Block = x + mixer(norm(x)); x + MLP(norm(x)), the mixer chosen by `config.layer_pattern`
("G" = GatedDeltaNet, "F" = FullAttention). LM head untied unless `config.tie_embeddings`.

Engine API (cache tensors in `HybridCache`, per-request addresses in `SeqCache`):
- `prefill(tokens, cache, seq, ...)`: one request, positions seq.num_tokens .. +T, all layers;
  returns last-position logits. Used for whole prompts, prompt chunks and prefix-cache resumes.
- `decode(tokens, cache, seqs)`: one token for each of B requests of different lengths.
The model never mutates a `SeqCache`; the caller advances `num_tokens` after each call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from prfaas.model.cache import HybridCache, LinearStates, SeqCache
from prfaas.model.config import EOS_ID, HybridConfig
from prfaas.model.decode_batch import DecodeBatch
from prfaas.model.fused_decode import FusedDecode
from prfaas.model.layers import MLP, FullAttention, GatedDeltaNet, RMSNorm, row_tiled


class ContextLengthError(ValueError):
    """A request would grow past the model's `max_context`."""


class Block(nn.Module):
    def __init__(self, c: HybridConfig, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.mixer_norm = RMSNorm(c.d_model, c.rms_eps, c.norm_offset)
        self.mixer: GatedDeltaNet | FullAttention = (
            GatedDeltaNet(c) if kind == "G" else FullAttention(c)
        )
        self.mlp_norm = RMSNorm(c.d_model, c.rms_eps, c.norm_offset)
        self.mlp = MLP(c)


class BlockStack(nn.ModuleList):
    """The model's blocks in layer order: a ModuleList (state-dict keys `blocks.<i>.*`) whose
    iteration is typed, so callers reach `Block` attributes without Module's dynamic getattr."""

    def __iter__(self) -> Iterator[Block]:
        # ModuleList is not generic; every item was built as a Block by HybridModel.__init__.
        return cast(Iterator[Block], super().__iter__())


class HybridModel(nn.Module):
    """Embedding → blocks → final norm → LM head. Build with `HybridModel(config, device)`:
    weights are initialised deterministically from `config.seed` (same values on any device)."""

    # Registered buffer [V] fp32: 0 for generable ids, -inf for the rest (added to the logits).
    logit_mask: Tensor

    def __init__(
        self, config: HybridConfig, device: torch.device | str = "cpu", *, initialize: bool = True
    ) -> None:
        """`initialize=False` skips the seeded init (the caller loads every weight: a checkpoint)."""
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = BlockStack(Block(c, kind) for kind in c.layer_pattern)
        self.final_norm = RMSNorm(c.d_model, c.rms_eps, c.norm_offset)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        mask = torch.zeros(c.vocab_size)
        if c.byte_vocab:
            # Only byte ids and EOS can be generated; BOS, PAD and vocabulary padding get -inf.
            mask.fill_(float("-inf"))
            mask[:256] = 0.0
            mask[EOS_ID] = 0.0
        self.register_buffer("logit_mask", mask, persistent=False)
        if initialize:
            self.init_weights()
        self.to(device=device, dtype=c.torch_dtype)
        self.logit_mask = self.logit_mask.float()
        self.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @torch.no_grad()
    def init_weights(self) -> None:
        """Seeded init on CPU in fp32 (device independent). Residual outputs are scaled down by
        depth so activations stay O(1); the head gives logits of std ~1.5, so greedy picks vary."""
        gen = torch.Generator().manual_seed(self.config.seed)
        depth_scale = 1.0 / math.sqrt(2 * self.config.num_layers)
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1] if "." in name else name
            if name.endswith("norm.weight"):
                norm = self.get_submodule(name.rsplit(".", 1)[0])
                assert isinstance(norm, RMSNorm), name
                p.fill_(1.0 - norm.offset)
            elif leaf == "A_log":
                p.copy_(torch.empty(p.shape).uniform_(1.0, 16.0, generator=gen).log())
            elif leaf == "dt_bias":
                # inverse softplus of dt, log-uniform in [1e-3, 1e-1]
                dt = torch.empty(p.shape).uniform_(math.log(1e-3), math.log(1e-1), generator=gen)
                dt = dt.exp()
                p.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif leaf == "conv_weight":
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif name == "embed.weight":
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                std = 1.0 / math.sqrt(p.shape[1])
                if name == "lm_head.weight":
                    std *= 1.5
                elif name.endswith(("out_proj.weight", "o_proj.weight", "down.weight")):
                    std *= depth_scale
                p.copy_(torch.randn(p.shape, generator=gen) * std)

    def _logits(self, x: Tensor) -> Tensor:
        """x [N, d] -> fp32 logits [N, V] with non-generable ids masked to -inf."""
        return self.lm_head(self.final_norm(x)).float() + self.logit_mask

    def _check_fits(self, seq: SeqCache, num_new: int, cache: HybridCache) -> None:
        end = seq.num_tokens + num_new
        if end > self.config.max_context:
            raise ContextLengthError(
                f"request would reach {end} tokens; max_context is {self.config.max_context}"
            )
        if len(seq.block_table) * cache.block_size < end and self.config.full_layers:
            raise ValueError(
                f"block_table covers {len(seq.block_table) * cache.block_size} tokens, need {end}"
            )

    @torch.no_grad()
    def prefill(
        self,
        tokens: Tensor,
        cache: HybridCache,
        seq: SeqCache,
        *,
        on_layer_done: Callable[[int, int, int], None] | None = None,
        checkpoint_positions: Sequence[int] = (),
        checkpoint_sink: Callable[[int, LinearStates], None] | None = None,
    ) -> Tensor:
        """Run tokens [T] at positions seq.num_tokens .. seq.num_tokens+T through every layer.

        The caller preallocates `seq.block_table` to cover the new positions and owns
        `seq.state_slot`; `seq.num_tokens == 0` means a fresh request (its slot is zeroed, never
        read). The run's KV and the linear states after it are written to `cache`; `seq` is not
        modified. Returns the last position's logits [V] (fp32).

        on_layer_done(layer_idx, start, end): called as soon as that layer has written its cache for
        this call (KV of [start, end), or the final linear state): layer-wise streaming hooks here.
        checkpoint_positions / checkpoint_sink: for each absolute position p of the increasing
        checkpoint_positions (each a multiple of chunk_size in (start, end]; which ones is the
        caller's rule, prfaas/checkpoint_rule.py), the sink receives
        (p, [(recurrent, conv) per linear layer]) — copies of the states after p tokens — after
        all layers ran, in increasing p. The positions change no output: states are only copied.
        Raises ContextLengthError when start+T > max_context.
        """
        c = self.config
        T = int(tokens.shape[0])
        if T < 1:
            raise ValueError("prefill needs at least one token")
        self._check_fits(seq, T, cache)
        start, end = seq.num_tokens, seq.num_tokens + T
        points = list(checkpoint_positions)
        if points != sorted(set(points)):
            raise ValueError("checkpoint positions must increase")
        for p in points:
            if p % c.chunk_size or not start < p <= end:
                raise ValueError(
                    f"checkpoint position {p} must be a multiple of {c.chunk_size} "
                    f"in ({start}, {end}]"
                )
        ckpts: dict[int, LinearStates] = {p: [] for p in points}
        slot = seq.state_slot
        if start == 0:
            cache.zero_state(slot)
        # Query tile of full attention = block size: split prefills at block boundaries are exact.
        tile = cache.block_size
        x = self.embed(tokens.to(self.device))
        for idx, block in enumerate(self.blocks):
            h = block.mixer_norm(x)
            i = cache.ordinal(idx)
            if isinstance(block.mixer, GatedDeltaNet):
                out, rec, conv, states = block.mixer.prefill(
                    h, cache.recurrent[i][slot], cache.conv[i][slot], start, points
                )
                cache.recurrent[i][slot] = rec
                cache.conv[i][slot] = conv
                for p, st in zip(points, states, strict=True):
                    ckpts[p].append(st)
            else:
                out = block.mixer.prefill(h, cache.kv[i], seq.block_table, start, tile)
            if on_layer_done is not None:
                on_layer_done(idx, start, end)
            x = x + out
            x = x + row_tiled(lambda r, b=block: b.mlp(b.mlp_norm(r)), x)
        if checkpoint_sink is not None:
            for p in points:
                checkpoint_sink(p, ckpts[p])
        return self._logits(x[-1:])[0]

    @torch.no_grad()
    def decode(self, tokens: Tensor, cache: HybridCache, seqs: list[SeqCache]) -> Tensor:
        """One step for B requests: token b goes at position seqs[b].num_tokens.

        tokens: [B]; each seq's block table must cover its new position. Writes the new KV and
        linear states; `seqs` are not modified (the caller advances num_tokens). Returns [B, V] fp32.
        """
        B = int(tokens.shape[0])
        if len(seqs) != B:
            raise ValueError(f"{B} tokens for {len(seqs)} sequences")
        for s in seqs:
            self._check_fits(s, 1, cache)
        for s in seqs:
            if s.num_tokens == 0:
                cache.zero_state(s.state_slot)
        batch = DecodeBatch.build(
            seqs, cache.block_size, cache.device, has_kv=bool(self.config.full_layers)
        )
        if FusedDecode.applies(self):  # fp32 CPU: the whole step in one native call
            return FusedDecode.for_model(self).step(tokens, cache, batch)
        x = self.embed(tokens.to(self.device))
        for idx, block in enumerate(self.blocks):
            h = block.mixer_norm(x)
            i = cache.ordinal(idx)
            if isinstance(block.mixer, GatedDeltaNet):
                out = block.mixer.decode(h, cache.recurrent[i], cache.conv[i], batch.slots)
            else:
                out = block.mixer.decode(h, cache.kv[i], batch)
            x = x + out
            x = x + block.mlp(block.mlp_norm(x))
        return self._logits(x)
