"""Write a random Qwen3.5-shaped checkpoint directory for `prfaas bench model --model DIR`.

Every layer has the public Qwen3.5-0.8B text model's shapes (its config.json `text_config`):
hidden 1024, intermediate 3584, 8 query / 2 KV heads of dim 256 (partial rotary 0.25), GDN 16 key
and 16 value heads of dim 128, conv kernel 4, vocabulary 248320, tied embeddings. Only the layer
count differs (default 4: three GDN layers and one full-attention layer, the real 3:1 pattern), so
per-token costs per layer and the KV/state sizes per layer are the real model's.
Weights are random (transformers' initialisation, zero-centred norms perturbed so they matter):
the text is noise, the timings are not. Needs `transformers` (a dev dependency); no download.

    .venv/bin/python scripts/make_random_qwen35.py /tmp/qwen35-0.8b-4l [--layers 4] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

# Qwen/Qwen3.5-0.8B text_config (transformers' own defaults are the 9B's, so stated here).
QWEN35_0_8B_TEXT = {
    "vocab_size": 248320,
    "hidden_size": 1024,
    "intermediate_size": 3584,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10_000_000.0,
        "partial_rotary_factor": 0.25,
    },
    "max_position_embeddings": 262144,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
}


def make_random_qwen35(root: Path, layers: int = 4, dtype: str = "bfloat16", seed: int = 0) -> Path:
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    layer_types = [
        "full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)
    ]
    config = Qwen3_5TextConfig(
        **QWEN35_0_8B_TEXT, num_hidden_layers=layers, layer_types=layer_types
    )
    torch.manual_seed(seed)
    model = Qwen3_5ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("linear_attn.norm.weight"):  # plain RMSNorm: weight around 1
                p.uniform_(0.5, 1.5)
            elif name.endswith("norm.weight"):  # zero-centred: scale 1 + weight
                p.normal_(0.0, 0.2)
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(root))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument(
        "--layers", type=int, default=4, help="decoder layers (every 4th is attention)"
    )
    parser.add_argument("--dtype", default="bfloat16", help="bfloat16 | float32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_random_qwen35(args.dir, args.layers, args.dtype, args.seed))


if __name__ == "__main__":
    main()
