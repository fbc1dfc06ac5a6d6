"""Tiny random Qwen3.5 checkpoints built offline with `transformers` (no download), saved with
`save_pretrained`, plus a small byte-level BPE tokenizer and a ChatML chat template, so a test
can load the directory exactly as a user's checkpoint.

Import only where `transformers` is installed (a dev dependency); tests skip otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

VOCAB = 320
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML as Qwen templates write it (a reduced version: no tools, no thinking blocks).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def tiny_text_config(**overrides: object):  # noqa: ANN201 (transformers type)
    from transformers import Qwen3_5TextConfig

    fields: dict[str, object] = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,  # separate key/value head counts (GVA)
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 24,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    }
    fields.update(overrides)
    return Qwen3_5TextConfig(**fields)


def random_qwen35(seed: int = 0, **overrides: object):  # noqa: ANN201
    """A Qwen3_5ForCausalLM with every parameter random. transformers initialises the
    zero-centred norms to 0 (identity), which would hide a wrong norm offset: perturb them."""
    from transformers import Qwen3_5ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3_5ForCausalLM(tiny_text_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("linear_attn.norm.weight"):  # plain RMSNorm: weight around 1
                p.uniform_(0.5, 1.5)
            elif name.endswith("norm.weight"):  # zero-centred: scale 1 + weight
                p.normal_(0.0, 0.2)
    return model


def write_tokenizer(root: Path, eos: str = "<|im_end|>") -> None:
    """tokenizer.json (byte-level BPE trained on a few sentences), tokenizer_config.json with the
    chat template, generation_config.json naming two EOS ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 8,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = ["The quick brown fox jumps over the lazy dog. Hello world, hello prfaas!"] * 20
    tok.train_from_iterator(text, trainer)
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "chat_template": CHAT_TEMPLATE,
                "eos_token": eos,
                "pad_token": "<|endoftext|>",
                "bos_token": None,
                "model_max_length": 2048,
            }
        )
    )
    ids = [tok.token_to_id(s) for s in ("<|im_end|>", "<|endoftext|>")]
    gen = json.loads((root / "generation_config.json").read_text())
    gen["eos_token_id"] = ids
    (root / "generation_config.json").write_text(json.dumps(gen))


def make_checkpoint(
    root: Path, seed: int = 0, *, max_shard_size: str | None = None, **overrides: object
) -> Path:
    """Save a random tiny Qwen3.5 (and its tokenizer files) to `root`; returns `root`."""
    model = random_qwen35(seed, **overrides)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(root), **kwargs)
    write_tokenizer(root)
    return root
