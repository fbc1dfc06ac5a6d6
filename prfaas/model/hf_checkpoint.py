"""Load a Hugging Face Qwen3.5 checkpoint directory into our `HybridModel`.

Weights come from `model.safetensors` or the shards named by `model.safetensors.index.json`; each
Hugging Face tensor maps to one of ours (table below), with two layout changes:
- attention `q_proj` rows are [head, (query | gate), head_dim] in Qwen3.5; ours are
  [(query | gate), head, head_dim] (`FullAttention` splits the projection in two halves);
- `mlp.gate_proj` and `mlp.up_proj` are concatenated into our fused `mlp.gate_up`.
`conv1d.weight` [D, 1, K] becomes `conv_weight` [D, K] (same tap order: oldest input first).
MTP heads (`mtp.*`) and the vision tower (`model.visual.*`) are not loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from prfaas.model.config import HybridConfig
from prfaas.model.hf_config import HFModelInfo, UnsupportedCheckpointError, read_hf_model_info
from prfaas.model.hybrid import HybridModel

# Hugging Face name inside a decoder layer -> ours inside `blocks.{i}`.
_LAYER_NAMES = {
    "input_layernorm.weight": "mixer_norm.weight",
    "post_attention_layernorm.weight": "mlp_norm.weight",
    "linear_attn.in_proj_qkv.weight": "mixer.in_qkv.weight",
    "linear_attn.in_proj_z.weight": "mixer.in_z.weight",
    "linear_attn.in_proj_b.weight": "mixer.in_b.weight",
    "linear_attn.in_proj_a.weight": "mixer.in_a.weight",
    "linear_attn.conv1d.weight": "mixer.conv_weight",
    "linear_attn.A_log": "mixer.A_log",
    "linear_attn.dt_bias": "mixer.dt_bias",
    "linear_attn.norm.weight": "mixer.out_norm.weight",
    "linear_attn.out_proj.weight": "mixer.out_proj.weight",
    "self_attn.q_proj.weight": "mixer.q_proj.weight",
    "self_attn.k_proj.weight": "mixer.k_proj.weight",
    "self_attn.v_proj.weight": "mixer.v_proj.weight",
    "self_attn.o_proj.weight": "mixer.o_proj.weight",
    "self_attn.q_norm.weight": "mixer.q_norm.weight",
    "self_attn.k_norm.weight": "mixer.k_norm.weight",
    "mlp.down_proj.weight": "mlp.down.weight",
    # gate_proj / up_proj: fused below
}
_LAYER_RE = re.compile(r"layers\.(\d+)\.(.+)")


def weight_files(root: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory (all shards of a sharded one)."""
    index = root / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [root / s for s in shards]
    single = root / "model.safetensors"
    if single.exists():
        return [single]
    files = sorted(root.glob("*.safetensors"))
    if not files:
        raise UnsupportedCheckpointError(f"{root}: no *.safetensors weights")
    return files


def _to_ours(name: str, t: Tensor, c: HybridConfig) -> tuple[str, Tensor] | None:
    """One body tensor (prefix stripped) -> (our name, tensor), or None for gate/up (fused later)."""
    if name == "embed_tokens.weight":
        return "embed.weight", t
    if name == "norm.weight":
        return "final_norm.weight", t
    m = _LAYER_RE.fullmatch(name)
    if m is None:
        raise UnsupportedCheckpointError(f"unexpected tensor {name!r}")
    layer, rest = int(m.group(1)), m.group(2)
    if rest in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
        return None
    if rest not in _LAYER_NAMES:
        raise UnsupportedCheckpointError(f"unexpected tensor {name!r}")
    if rest == "linear_attn.conv1d.weight":
        t = t.reshape(t.shape[0], t.shape[-1])
    elif rest == "self_attn.q_proj.weight":
        # [Hq, 2, hd, d] (query | gate per head) -> [2, Hq, hd, d]
        t = t.reshape(c.n_q_heads, 2, c.head_dim, -1).transpose(0, 1).reshape(-1, t.shape[-1])
    return f"blocks.{layer}.{_LAYER_NAMES[rest]}", t


def read_state_dict(info: HFModelInfo) -> dict[str, Tensor]:
    """Our state dict (checkpoint dtype, CPU) from the directory's safetensors files."""
    c = info.config
    ours: dict[str, Tensor] = {}
    gate_up: dict[int, dict[str, Tensor]] = {}
    for path in weight_files(info.path):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key == "lm_head.weight":
                    if not c.tie_embeddings:
                        ours["lm_head.weight"] = f.get_tensor(key)
                    continue
                if not key.startswith(info.weight_prefix):
                    continue  # mtp.*, model.visual.*
                name = key[len(info.weight_prefix) :]
                mapped = _to_ours(name, f.get_tensor(key), c)
                if mapped is None:
                    m = _LAYER_RE.fullmatch(name)
                    assert m is not None
                    gate_up.setdefault(int(m.group(1)), {})[m.group(2)] = f.get_tensor(key)
                else:
                    ours[mapped[0]] = mapped[1]
    for layer, parts in gate_up.items():
        ours[f"blocks.{layer}.mlp.gate_up.weight"] = torch.cat(
            [parts["mlp.gate_proj.weight"], parts["mlp.up_proj.weight"]]
        )
    if c.tie_embeddings and "embed.weight" in ours:
        ours["lm_head.weight"] = ours["embed.weight"]
    return ours


def load_hf_model(
    path: str | Path, device: torch.device | str = "cpu", dtype: str | None = None
) -> tuple[HybridModel, HFModelInfo]:
    """Build our model from a Qwen3.5 checkpoint directory. `dtype` overrides the checkpoint's
    (weights, activations and KV; linear-layer state is fp32 either way). Every parameter must be
    present in the checkpoint (strict load)."""
    info = read_hf_model_info(path, dtype)
    model = HybridModel(info.config, device="meta", initialize=False)
    state = read_state_dict(info)
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise UnsupportedCheckpointError(f"{path}: checkpoint lacks {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=True, assign=True)
    if info.config.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    # The logit mask is a buffer built on "meta": rebuild it (all ids generable), fp32 like
    # HybridModel's own.
    model.logit_mask = torch.zeros(info.config.vocab_size)
    model.to(device=device, dtype=info.config.torch_dtype)
    model.logit_mask = model.logit_mask.float()
    model.eval()
    return model, info
