"""The hybrid model's layers, each with a fast prefill path, a batched decode path and a reference.

Read top to bottom: RMSNorm → GatedDeltaNet (linear attention) → FullAttention (GQA + RoPE) → MLP.
Layers never touch the cache objects: the model (hybrid.py) reads states/KV out of `HybridCache`,
passes tensors in, and writes the returned states back, so cache ownership stays in one place.
Projections run in the model dtype; the GDN core, its conv and all state stay in fp32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prfaas.model.config import HybridConfig
from prfaas.model.decode_batch import DecodeBatch
from prfaas.model.ops import native
from prfaas.model.ops.attention import (
    causal_attention_ref,
    paged_decode_attention,
    prefill_attention,
    write_kv,
)
from prfaas.model.ops.linear_attn import (
    causal_conv_prefill,
    causal_conv_ref,
    causal_conv_update,
    chunk_gated_delta_rule,
    recurrent_gated_delta_rule_ref,
    recurrent_gated_delta_rule_step,
)
from prfaas.model.ops.rope import apply_rope

# Weight matmuls over long prompts run in row tiles: on CPU a [16K, 256] x [256, 1408] GEMM reaches
# ~60% of the FLOP/s of [2K, 256] tiles (operands fall out of cache). Rows are independent.
ROW_TILE = 2048
# GDN layers run in segments of this many tokens (a multiple of the chunk size; see prefill).
GDN_SEGMENT = 1024


def row_tiled(fn: Callable[..., Tensor], *xs: Tensor) -> Tensor:
    """fn(*xs) computed on row tiles of the xs (all [N, ...]; fn must act row by row)."""
    N = xs[0].shape[0]
    if N <= ROW_TILE:
        return fn(*xs)
    first = fn(*(x[:ROW_TILE] for x in xs))
    out = first.new_empty((N, *first.shape[1:]))
    out[:ROW_TILE] = first
    for i in range(ROW_TILE, N, ROW_TILE):
        out[i : i + ROW_TILE] = fn(*(x[i : i + ROW_TILE] for x in xs))
    return out


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, computed in fp32 and cast back to the input dtype.

    Scale = offset + weight: offset 1.0 is the zero-centred form (Qwen3.5 stores weight - 1), added
    in fp32 so a bf16 checkpoint's small weights keep their precision."""

    def __init__(self, dim: int, eps: float, offset: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset))
        self.eps = eps
        self.offset = offset

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        scale = self.weight.float() + self.offset if self.offset else self.weight.float()
        return (xf * scale).to(x.dtype)


def _l2norm(x: Tensor, eps: float) -> Tensor:
    """L2-normalise the last dim: F.normalize when eps == 0, else fla's x · rsqrt(|x|² + eps)."""
    if eps == 0:
        return F.normalize(x, dim=-1)
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


class GatedDeltaNet(nn.Module):
    """Gated DeltaNet mixer (docs/hybrid-model.md §2.1): conv → L2-norm q/k → gated delta rule → gated norm."""

    def __init__(self, c: HybridConfig) -> None:
        super().__init__()
        self.c = c
        d, hv, dv = c.d_model, c.gdn_num_v_heads, c.gdn_head_v_dim
        self.in_qkv = nn.Linear(d, c.conv_dim, bias=False)
        self.in_z = nn.Linear(d, hv * dv, bias=False)
        self.in_b = nn.Linear(d, hv, bias=False)
        self.in_a = nn.Linear(d, hv, bias=False)
        # Depthwise conv taps [conv_dim, K], oldest input first.
        self.conv_weight = nn.Parameter(torch.empty(c.conv_dim, c.conv_kernel))
        self.A_log = nn.Parameter(torch.empty(hv))
        self.dt_bias = nn.Parameter(torch.empty(hv))
        self.out_norm = RMSNorm(dv, c.rms_eps)
        self.out_proj = nn.Linear(hv * dv, d, bias=False)

    def _core_inputs(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Post-conv activations y [N, conv_dim] (fp32) and normed input h [N, d] ->
        q, k [N, H_v, d_k] (normalised, q scaled, repeated for GVA), v [N, H_v, d_v], beta, g [N, H_v].
        Prefill and decode share this so q/k-norm and gates are computed identically."""
        c = self.c
        N = y.shape[0]
        y = F.silu(y)
        nk = c.gdn_num_k_heads * c.gdn_head_k_dim
        q = y[:, :nk].reshape(N, c.gdn_num_k_heads, c.gdn_head_k_dim)
        k = y[:, nk : 2 * nk].reshape(N, c.gdn_num_k_heads, c.gdn_head_k_dim)
        v = y[:, 2 * nk :].reshape(N, c.gdn_num_v_heads, c.gdn_head_v_dim)
        q = _l2norm(q, c.gdn_qk_norm_eps) * c.gdn_head_k_dim**-0.5
        k = _l2norm(k, c.gdn_qk_norm_eps)
        group = c.gdn_num_v_heads // c.gdn_num_k_heads
        if group > 1:
            q = q.repeat_interleave(group, dim=1)
            k = k.repeat_interleave(group, dim=1)
        beta = torch.sigmoid(self.in_b(h).float())
        # Log-space decay g = -exp(A_log) * softplus(a + dt_bias) <= 0, in fp32.
        g = -self.A_log.float().exp() * F.softplus(self.in_a(h).float() + self.dt_bias.float())
        return q, k, v, beta, g

    def _output(self, o: Tensor, h: Tensor) -> Tensor:
        """o [N, H_v, d_v] fp32 -> per-head RMSNorm × SiLU(z) -> out_proj -> [N, d] model dtype."""
        N = o.shape[0]
        z = self.in_z(h).float().reshape(N, self.c.gdn_num_v_heads, -1)
        o = self.out_norm(o) * F.silu(z)
        return self.out_proj(o.reshape(N, -1).to(h.dtype))

    def prefill(
        self, h: Tensor, rec: Tensor, conv: Tensor, start: int, checkpoints: list[int]
    ) -> tuple[Tensor, Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
        """h [T, d] at positions [start, start+T); rec [H_v, d_k, d_v], conv [conv_dim, K-1]: states
        after `start` tokens. Returns (out [T, d], new rec, new conv, [(rec, conv) at each absolute
        position in `checkpoints`]).

        The whole layer runs segment by segment (GDN_SEGMENT tokens on the absolute grid, carrying
        both states), so every temporary stays cache-sized; each row / chunk is computed the same
        way whichever segment or prefill split it falls in."""
        T = h.shape[0]
        conv_w = self.conv_weight.float()
        out = torch.empty_like(h)
        ckpts: list[tuple[Tensor, Tensor]] = []
        a = start
        seg = max(1, GDN_SEGMENT // self.c.chunk_size) * self.c.chunk_size  # whole chunks
        while a < start + T:
            b = min((a // seg + 1) * seg, start + T)
            points = [p for p in checkpoints if a < p <= b]
            hs = h[a - start : b - start]
            y, conv, conv_ckpts = causal_conv_prefill(
                self.in_qkv(hs).float(), conv_w, conv, [p - a for p in points]
            )
            q, k, v, beta, g = self._core_inputs(y, hs)
            o, rec, rec_ckpts = chunk_gated_delta_rule(
                q,
                k,
                v,
                beta,
                g,
                rec,
                chunk_size=self.c.chunk_size,
                start_pos=a,
                checkpoint_positions=points,
            )
            out[a - start : b - start] = self._output(o, hs)
            ckpts += zip(rec_ckpts, conv_ckpts, strict=True)
            a = b
        return out, rec, conv, ckpts

    def decode(self, h: Tensor, rec_cache: Tensor, conv_cache: Tensor, slots: Tensor) -> Tensor:
        """h [B, d]; rec_cache [num_slots, H_v, d_k, d_v] and conv_cache [num_slots, conv_dim, K-1]
        are this layer's whole state tensors, request b in row slots[b]; both are updated in place.
        Returns out [B, d]. fp32 CPU states take the native kernel (one pass over each state, no
        gather/scatter copies); elsewhere the torch step on gathered rows."""
        conv = conv_cache.index_select(0, slots)
        y, new_conv = causal_conv_update(self.in_qkv(h).float(), self.conv_weight.float(), conv)
        conv_cache.index_copy_(0, slots, new_conv)
        q, k, v, beta, g = self._core_inputs(y, h)
        if native.usable(q, rec_cache):
            o = native.gdn_decode_step_native(
                q.contiguous(), k.contiguous(), v.contiguous(), beta, g, rec_cache, slots
            )
        else:
            rec = rec_cache.index_select(0, slots)
            o, new_rec = recurrent_gated_delta_rule_step(q, k, v, beta, g, rec)
            rec_cache.index_copy_(0, slots, new_rec)
        return self._output(o, h)

    def reference(self, h: Tensor) -> Tensor:
        """Oracle: a whole sequence from the empty state with the token-by-token definitions."""
        y, _ = causal_conv_ref(self.in_qkv(h).float(), self.conv_weight.float())
        q, k, v, beta, g = self._core_inputs(y, h)
        o, _ = recurrent_gated_delta_rule_ref(q, k, v, beta, g)
        return self._output(o, h)


class FullAttention(nn.Module):
    """GQA attention with q/k RMSNorm, (partial) RoPE and an optional sigmoid output gate."""

    def __init__(self, c: HybridConfig) -> None:
        super().__init__()
        self.c = c
        d, hd = c.d_model, c.head_dim
        q_width = c.n_q_heads * hd * (2 if c.attn_output_gate else 1)
        self.q_proj = nn.Linear(d, q_width, bias=False)
        self.k_proj = nn.Linear(d, c.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, c.n_kv_heads * hd, bias=False)
        self.q_norm = RMSNorm(hd, c.rms_eps, c.norm_offset)
        self.k_norm = RMSNorm(hd, c.rms_eps, c.norm_offset)
        self.o_proj = nn.Linear(c.n_q_heads * hd, d, bias=False)

    def _qkv(self, h: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """h [N, d] -> q [N, Hq, hd], k, v [N, Hkv, hd] (RoPE applied), gate [N, Hq*hd] or None."""
        c = self.c
        N = h.shape[0]
        qg = row_tiled(self.q_proj, h)
        gate = None
        if c.attn_output_gate:
            qg, gate = qg.chunk(2, dim=-1)
        q = self.q_norm(qg.reshape(N, c.n_q_heads, c.head_dim))
        k = self.k_norm(self.k_proj(h).reshape(N, c.n_kv_heads, c.head_dim))
        v = self.v_proj(h).reshape(N, c.n_kv_heads, c.head_dim)
        q = apply_rope(q, positions, c.rope_dim, c.rope_theta)
        k = apply_rope(k, positions, c.rope_dim, c.rope_theta)
        return q, k, v, gate

    def _output(self, o: Tensor, gate: Tensor | None = None) -> Tensor:
        o = o.reshape(o.shape[0], -1)
        if gate is not None:
            o = o * torch.sigmoid(gate)
        return self.o_proj(o)

    def prefill(
        self, h: Tensor, kv: Tensor, block_table: list[int], start: int, tile: int
    ) -> Tensor:
        """h [T, d] at positions [start, start+T); writes their K/V into `kv` (one layer's cache),
        then attends over keys [0, start+T) read back from the cache. Returns [T, d]."""
        positions = torch.arange(start, start + h.shape[0], device=h.device)
        q, k, v, gate = self._qkv(h, positions)
        write_kv(kv, block_table, start, k, v)
        o = prefill_attention(q, kv, block_table, start, tile=tile)
        if gate is None:
            return row_tiled(self._output, o)
        return row_tiled(self._output, o, gate)

    def decode(self, h: Tensor, kv: Tensor, batch: DecodeBatch) -> Tensor:
        """h [B, d]; token b at batch.positions[b]. Writes every new K/V into the cache with one
        indexed copy, then attends (native kernel for fp32 CPU caches). Returns [B, d]."""
        q, k, v, gate = self._qkv(h, batch.positions)
        # kv viewed as [num_blocks * block_size, 2, Hkv, hd]; kv_rows addresses each new token.
        kv.view(-1, *kv.shape[2:]).index_copy_(0, batch.kv_rows, torch.stack([k, v], dim=1))
        if native.usable(q, kv):
            o = native.paged_decode_attention_native(
                q.contiguous(), kv, batch.tables, batch.lengths
            )
        else:
            o = paged_decode_attention(q, kv, batch.table_lists, batch.length_list)
        return self._output(o, gate)

    def reference(self, h: Tensor) -> Tensor:
        """Oracle: dense causal attention over the whole sequence, no cache."""
        q, k, v, gate = self._qkv(h, torch.arange(h.shape[0], device=h.device))
        return self._output(causal_attention_ref(q, k, v), gate)


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, c: HybridConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(c.d_model, 2 * c.ffn_dim, bias=False)
        self.down = nn.Linear(c.ffn_dim, c.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
