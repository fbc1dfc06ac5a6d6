"""A Hugging Face checkpoint directory's `config.json` (+ `generation_config.json`) as a
`HybridConfig` plus what serving needs (name, EOS ids, context length). Torch-free: the router
reads it too.

Supported architecture: the Qwen3.5 text family, `model_type` "qwen3_5_text" (a text-only
`Qwen3_5ForCausalLM`), or "qwen3_5" (the multimodal wrapper, whose `text_config` holds the same
fields; its vision tower is not loaded). Qwen3.5 is our hybrid model exactly: Gated DeltaNet
layers with separate key/value head counts and gated GQA full attention with partial RoPE, in the
order of `layer_types`, with zero-centred RMSNorms (`norm_offset` 1.0) and optionally tied
embeddings. Qwen3-Next ("qwen3_next") is refused: its MoE feed-forward and interleaved q/k/v/z
projection layout are not implemented.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prfaas.model.config import DTYPE_BYTES, HybridConfig

SUPPORTED_MODEL_TYPES = ("qwen3_5_text", "qwen3_5")
LAYER_KINDS = {"linear_attention": "G", "full_attention": "F"}


class UnsupportedCheckpointError(ValueError):
    """The directory holds a model prfaas cannot run (and says which feature is missing)."""


@dataclass(frozen=True)
class HFModelInfo:
    path: Path
    # Served model id (/v1/models): the directory's name.
    name: str
    config: HybridConfig
    # Tensor-name prefix of the text model's body: "model." or "model.language_model.".
    weight_prefix: str
    # Generation ends on any of these (generation_config.json, else config.json).
    eos_token_ids: tuple[int, ...]

    @property
    def max_context(self) -> int:
        return self.config.max_context


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _ids(value: object) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value]
    raise UnsupportedCheckpointError(f"token ids must be an int or a list of ints: {value!r}")


def _text_config(raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    model_type = raw.get("model_type")
    if model_type == "qwen3_5_text":
        return raw, "model."
    if model_type == "qwen3_5":
        text = dict(raw.get("text_config") or {})
        # The wrapper's flags (dtype, tying) apply to the text model unless it sets its own.
        for key in ("tie_word_embeddings", "dtype", "torch_dtype"):
            if key in raw and key not in text:
                text[key] = raw[key]
        return text, "model.language_model."
    if model_type == "qwen3_next":
        raise UnsupportedCheckpointError(
            "qwen3_next is not supported: its sparse MoE feed-forward and interleaved "
            "in_proj_qkvz/in_proj_ba layout are not implemented (Qwen3.5 text models are)"
        )
    raise UnsupportedCheckpointError(
        f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise UnsupportedCheckpointError(f"unsupported checkpoint feature: {what}")


def hybrid_config_from_hf(text: dict[str, Any], dtype: str | None = None) -> HybridConfig:
    """Map a Qwen3.5 text config (a dict as in config.json) to our `HybridConfig`."""
    _require(text.get("hidden_act", "silu") == "silu", f"hidden_act {text.get('hidden_act')!r}")
    _require(not text.get("attention_bias", False), "attention_bias")
    n_layers = int(text["num_hidden_layers"])
    layer_types = text.get("layer_types")
    if layer_types is None:
        interval = int(text.get("full_attention_interval", 4))
        layer_types = [
            "full_attention" if (i + 1) % interval == 0 else "linear_attention"
            for i in range(n_layers)
        ]
    _require(len(layer_types) == n_layers, "len(layer_types) != num_hidden_layers")
    unknown = set(layer_types) - set(LAYER_KINDS)
    _require(not unknown, f"layer types {sorted(unknown)}")
    rope = dict(text.get("rope_parameters") or text.get("rope_scaling") or {})
    _require(rope.get("rope_type", "default") == "default", f"rope_type {rope.get('rope_type')!r}")
    theta = float(rope.get("rope_theta", text.get("rope_theta", 10000.0)))
    partial = float(rope.get("partial_rotary_factor", text.get("partial_rotary_factor", 0.25)))
    head_dim = int(text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"])
    # Text-only positions are equal on Qwen3.5's three M-RoPE axes, so its interleaved M-RoPE is
    # plain RoPE over the first head_dim·partial dims (checked by the logits-parity tests).
    dtype = dtype or text.get("dtype") or text.get("torch_dtype") or "bfloat16"
    _require(dtype in DTYPE_BYTES, f"dtype {dtype!r}")
    return HybridConfig(
        vocab_size=int(text["vocab_size"]),
        d_model=int(text["hidden_size"]),
        layer_pattern="".join(LAYER_KINDS[t] for t in layer_types),
        gdn_num_k_heads=int(text["linear_num_key_heads"]),
        gdn_num_v_heads=int(text["linear_num_value_heads"]),
        gdn_head_k_dim=int(text["linear_key_head_dim"]),
        gdn_head_v_dim=int(text["linear_value_head_dim"]),
        conv_kernel=int(text.get("linear_conv_kernel_dim", 4)),
        n_q_heads=int(text["num_attention_heads"]),
        n_kv_heads=int(text["num_key_value_heads"]),
        head_dim=head_dim,
        rotary_dim=int(head_dim * partial),
        rope_theta=theta,
        attn_output_gate=True,
        ffn_dim=int(text["intermediate_size"]),
        rms_eps=float(text.get("rms_norm_eps", 1e-6)),
        max_context=int(text.get("max_position_embeddings", 32768)),
        dtype=dtype,
        norm_offset=1.0,
        gdn_qk_norm_eps=1e-6,
        tie_embeddings=bool(text.get("tie_word_embeddings", False)),
        byte_vocab=False,
    )


def is_hf_checkpoint_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").exists()


def read_hf_model_info(path: str | Path, dtype: str | None = None) -> HFModelInfo:
    """Read config.json and generation_config.json of a checkpoint directory.

    `dtype` overrides the checkpoint's (e.g. "float32" for CPU parity runs)."""
    root = Path(path)
    raw = _read_json(root / "config.json")
    if not raw:
        raise UnsupportedCheckpointError(f"{root}: no config.json")
    text, prefix = _text_config(raw)
    config = hybrid_config_from_hf(text, dtype)
    gen = _read_json(root / "generation_config.json")
    eos = _ids(gen.get("eos_token_id")) or _ids(text.get("eos_token_id"))
    return HFModelInfo(
        path=root,
        name=root.resolve().name,
        config=config,
        weight_prefix=prefix,
        eos_token_ids=tuple(dict.fromkeys(eos)),
    )
