"""`HybridConfig`: the one place that decides the model's shape and which layers are full attention.

Layer kinds come from `layer_pattern`, one letter per layer: `G` = Gated DeltaNet (linear attention,
fixed-size recurrent + conv state), `F` = full attention (GQA + RoPE, per-token KV in paged blocks).
Presets follow docs/hybrid-model.md §4.2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Byte-level tokenizer ids (prfaas/tokenizer/byte_level.py); the vocabulary is padded to `vocab_size`
# rows.
from prfaas.tokenizer.special_tokens import (  # noqa: F401 (re-exported)
    BOS_ID,
    EOS_ID,
    NUM_TOKENIZER_IDS,
    PAD_ID,
)

if TYPE_CHECKING:
    import torch

# Bytes per element of the weight/KV dtypes a config may name. Kept here, not read from torch, so
# configs (and the router, which only needs context limits) load without importing torch.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass(frozen=True)
class HybridConfig:
    """Shape of the hybrid model. Every field has a default (the `small` preset)."""

    # Embedding/head rows; ids >= NUM_TOKENIZER_IDS are padding and are never sampled.
    vocab_size: int = 512
    d_model: int = 256
    # One letter per layer: "G" = Gated DeltaNet, "F" = full attention.
    layer_pattern: str = "GGGFGGGF"
    # Gated DeltaNet: q/k heads, v heads (>= k heads, a multiple: GVA), per-head dims.
    gdn_num_k_heads: int = 4
    gdn_num_v_heads: int = 4
    gdn_head_k_dim: int = 64
    gdn_head_v_dim: int = 64
    # Short causal depthwise conv over [q; k; v] before the delta rule.
    conv_kernel: int = 4
    # Chunk length of the chunkwise-parallel prefill; block sizes and checkpoints are multiples.
    chunk_size: int = 64
    # Full attention (GQA).
    n_q_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 64
    # Rotary dims per head (partial RoPE when < head_dim); 0 means head_dim.
    rotary_dim: int = 0
    rope_theta: float = 10000.0
    # Sigmoid output gate on full attention (projection fused with q).
    attn_output_gate: bool = True
    ffn_dim: int = 704
    rms_eps: float = 1e-6
    # Longest sequence (prompt + generated) a request may reach.
    max_context: int = 32768
    # Weights, activations and full-attention KV; linear-layer state is always float32.
    dtype: str = "float32"
    # Seed of the deterministic initialisation.
    seed: int = 0
    # RMSNorm scale is (norm_offset + weight): 1.0 for Qwen3.5's zero-centred norms (block, final,
    # q/k norms; the GDN output norm is always plain). 0.0 = the usual weight-only scale.
    norm_offset: float = 0.0
    # GDN q/k L2 norm: 0 = x / max(|x|, 1e-12); > 0 = x · rsqrt(|x|² + eps) (fla / Qwen3.5: 1e-6,
    # which matters for small activations).
    gdn_qk_norm_eps: float = 0.0
    # LM head shares the embedding matrix (checkpoint has no lm_head.weight).
    tie_embeddings: bool = False
    # True: prfaas's byte-level vocabulary (only bytes and EOS are generable). False: a checkpoint's
    # own tokenizer, every id < vocab_size is generable and prompts may use any of them.
    byte_vocab: bool = True

    def __post_init__(self) -> None:
        if not self.layer_pattern or set(self.layer_pattern) - {"G", "F"}:
            raise ValueError(f"layer_pattern must use only 'G'/'F': {self.layer_pattern!r}")
        if self.gdn_num_v_heads % self.gdn_num_k_heads:
            raise ValueError("gdn_num_v_heads must be a multiple of gdn_num_k_heads")
        if self.n_q_heads % self.n_kv_heads:
            raise ValueError("n_q_heads must be a multiple of n_kv_heads")
        if self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise ValueError("rotary_dim must be even and <= head_dim")
        if self.byte_vocab and self.vocab_size < NUM_TOKENIZER_IDS:
            raise ValueError(f"vocab_size must be >= {NUM_TOKENIZER_IDS}")
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {self.dtype!r}")

    @property
    def num_layers(self) -> int:
        return len(self.layer_pattern)

    @property
    def full_layers(self) -> list[int]:
        """Model layer indices of full-attention layers; `cache.kv[i]` belongs to full_layers[i]."""
        return [i for i, c in enumerate(self.layer_pattern) if c == "F"]

    @property
    def linear_layers(self) -> list[int]:
        """Model layer indices of GDN layers; `cache.recurrent[j]` belongs to linear_layers[j]."""
        return [i for i, c in enumerate(self.layer_pattern) if c == "G"]

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)

    @property
    def rope_dim(self) -> int:
        return self.rotary_dim or self.head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the short conv: [q; k; v] = 2·H_k·d_k + H_v·d_v."""
        return (
            2 * self.gdn_num_k_heads * self.gdn_head_k_dim
            + self.gdn_num_v_heads * self.gdn_head_v_dim
        )

    @property
    def kv_bytes_per_token_layer(self) -> int:
        """K and V of one token in one full-attention layer."""
        return 2 * self.n_kv_heads * self.head_dim * DTYPE_BYTES[self.dtype]

    @property
    def kv_bytes_per_token(self) -> int:
        return len(self.full_layers) * self.kv_bytes_per_token_layer

    @property
    def recurrent_bytes_per_layer(self) -> int:
        return self.gdn_num_v_heads * self.gdn_head_k_dim * self.gdn_head_v_dim * 4

    @property
    def conv_bytes_per_layer(self) -> int:
        return self.conv_dim * (self.conv_kernel - 1) * 4

    @property
    def state_bytes_per_request(self) -> int:
        """Recurrent + conv state of all linear layers (fp32), independent of length."""
        per_layer = self.recurrent_bytes_per_layer + self.conv_bytes_per_layer
        return len(self.linear_layers) * per_layer

    @property
    def num_params(self) -> int:
        """Parameter count (embedding and head included; the head once more unless tied)."""
        d = self.d_model
        hv, dv = self.gdn_num_v_heads, self.gdn_head_v_dim
        gdn = (
            d * self.conv_dim  # in_proj_qkv
            + d * hv * dv  # z
            + 2 * d * hv  # b, a
            + self.conv_dim * self.conv_kernel
            + 2 * hv  # A_log, dt_bias
            + dv  # output norm
            + hv * dv * d  # out_proj
        )
        q_width = self.n_q_heads * self.head_dim * (2 if self.attn_output_gate else 1)
        attn = (
            d * q_width
            + 2 * d * self.n_kv_heads * self.head_dim
            + 2 * self.head_dim  # q/k norms
            + self.n_q_heads * self.head_dim * d
        )
        block = 2 * d + 3 * d * self.ffn_dim
        body = len(self.linear_layers) * gdn + len(self.full_layers) * attn
        body += self.num_layers * block + d
        return body + (1 if self.tie_embeddings else 2) * self.vocab_size * d

    def diff(self, other: HybridConfig) -> dict[str, tuple[object, object]]:
        """Fields that differ: {name: (self value, other value)}."""
        out = {}
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out[f.name] = (a, b)
        return out

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HybridConfig:
        """From decoded JSON (a checkpoint's metadata): unknown keys rejected, values checked by
        `__post_init__`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown HybridConfig fields: {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, HybridConfig] = {
    # Unit tests: 3 GDN + 1 full layer, about 1 M parameters.
    "tiny": HybridConfig(
        d_model=128,
        layer_pattern="GGGF",
        gdn_num_k_heads=2,
        gdn_num_v_heads=2,
        n_q_heads=2,
        n_kv_heads=1,
        ffn_dim=352,
        max_context=4096,
    ),
    # CPU default, about 7.1 M parameters.
    "small": HybridConfig(),
    # GPU (one H100): about 1.6 B parameters, bf16 weights and KV, fp32 linear state.
    "large": HybridConfig(
        d_model=2048,
        layer_pattern="GGGF" * 6,
        gdn_num_k_heads=16,
        gdn_num_v_heads=32,
        gdn_head_k_dim=128,
        gdn_head_v_dim=128,
        n_q_heads=16,
        n_kv_heads=2,
        head_dim=256,
        rotary_dim=64,
        ffn_dim=5632,
        max_context=131072,
        dtype="bfloat16",
    ),
}


def get_preset(name: str) -> HybridConfig:
    """A preset by name ("tiny", "small", "large"); vary a field with `dataclasses.replace`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
