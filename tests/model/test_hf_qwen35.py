"""Qwen3.5 checkpoints: our model loaded from a `save_pretrained` directory against the
transformers reference (the oracle), on prefill and on 32 decode steps.

Tolerances (max |Δlogit|, logits of magnitude ~1.5): fp32 1e-4 (observed ~4e-7); bf16 3e-2 against
transformers run in bf16 (observed ~8e-3: both round activations to bf16, at different points).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from hf_fixtures import make_checkpoint, random_qwen35  # noqa: E402

from prfaas.model.cache import HybridCache, SeqCache  # noqa: E402
from prfaas.model.hf_checkpoint import load_hf_model, weight_files  # noqa: E402
from prfaas.model.hf_config import (  # noqa: E402
    UnsupportedCheckpointError,
    read_hf_model_info,
)

PROMPT_LEN = 150  # two GDN chunks and a partial third; crosses a 64-token KV block twice
DECODE_STEPS = 32
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2}


def our_logits(model, tokens: torch.Tensor, prompt_len: int) -> torch.Tensor:  # noqa: ANN001
    """Prefill tokens[:prompt_len] then decode the rest one at a time, teacher-forced: logits
    [len(tokens) - prompt_len + 1, V] at positions prompt_len-1 .. len(tokens)-1."""
    cache = HybridCache(model.config, num_blocks=8, num_slots=2, block_size=64, fill=float("nan"))
    seq = SeqCache(list(range(8)), state_slot=1, num_tokens=0)
    out = [model.prefill(tokens[:prompt_len], cache, seq)]
    seq.num_tokens = prompt_len
    for t in range(prompt_len, len(tokens)):
        out.append(model.decode(tokens[t : t + 1], cache, [seq])[0])
        seq.num_tokens += 1
    return torch.stack(out[:-1])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("tie", [True, False])
def test_logits_match_transformers(tmp_path: Path, dtype: str, tie: bool) -> None:
    ref_model = random_qwen35(seed=1, tie_word_embeddings=tie)
    ref_model.save_pretrained(str(tmp_path), max_shard_size="100KB")  # sharded: index + shards
    assert (tmp_path / "model.safetensors.index.json").exists()
    ours, info = load_hf_model(tmp_path, dtype=dtype)
    assert info.config.tie_embeddings is tie
    tokens = torch.randint(0, info.config.vocab_size, (PROMPT_LEN + DECODE_STEPS + 1,),
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
    with torch.no_grad():
        ref = ref_model.to(getattr(torch, dtype))(tokens[None]).logits[0].float()
    got = our_logits(ours, tokens, PROMPT_LEN)
    want = ref[PROMPT_LEN - 1 : PROMPT_LEN + DECODE_STEPS]
    assert got.shape == want.shape == (DECODE_STEPS + 1, info.config.vocab_size)
    err = (got - want).abs().max().item()
    assert err < TOLERANCE[dtype], f"{dtype}: max |Δlogit| {err}"
    # The oracle is not trivially satisfied: logits vary across positions.
    assert (want[1:] - want[:-1]).abs().max() > 100 * TOLERANCE["float32"]


def test_greedy_tokens_match_transformers_generate(tmp_path: Path) -> None:
    """Free-running greedy decode (our cache) equals transformers' `generate` (its cache)."""
    ref_model = random_qwen35(seed=2)
    make_checkpoint(tmp_path, seed=2)
    ours, info = load_hf_model(tmp_path, dtype="float32")
    prompt = torch.randint(
        0, info.config.vocab_size, (70,), generator=torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        ref = ref_model.generate(prompt[None], max_new_tokens=DECODE_STEPS, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)[0, 70:].tolist()  # fmt: skip
    cache = HybridCache(info.config, num_blocks=4, num_slots=1, block_size=64)
    seq = SeqCache([0, 1, 2, 3], 0, 0)
    token = int(ours.prefill(prompt, cache, seq).argmax())
    seq.num_tokens = 70
    got = [token]
    for _ in range(DECODE_STEPS - 1):
        token = int(ours.decode(torch.tensor([token]), cache, [seq])[0].argmax())
        seq.num_tokens += 1
        got.append(token)
    assert got == ref


def test_config_mapping_and_reported_sizes(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, linear_num_key_heads=2, linear_num_value_heads=4)
    info = read_hf_model_info(tmp_path)
    c = info.config
    assert c.layer_pattern == "GGGF"
    assert (c.gdn_num_k_heads, c.gdn_num_v_heads, c.gdn_head_k_dim, c.gdn_head_v_dim) == (
        2,
        4,
        16,
        24,
    )
    assert (c.n_q_heads, c.n_kv_heads, c.head_dim, c.rotary_dim) == (4, 2, 32, 8)  # partial 0.25
    assert c.norm_offset == 1.0 and c.tie_embeddings and not c.byte_vocab
    assert c.max_context == 2048 and info.name == tmp_path.name
    tok = json.loads((tmp_path / "tokenizer.json").read_text())["added_tokens"]
    by_name = {t["content"]: t["id"] for t in tok}
    assert info.eos_token_ids == (by_name["<|im_end|>"], by_name["<|endoftext|>"])
    # KV bytes/token and state bytes/request are what the cache tensors hold, not assumed.
    ours, _ = load_hf_model(tmp_path, dtype="bfloat16")
    cache = HybridCache(ours.config, num_blocks=1, num_slots=1, block_size=64)
    kv_per_token = sum(kv[0, 0].nbytes for kv in cache.kv)
    state = sum(
        r[0].nbytes + cv[0].nbytes for r, cv in zip(cache.recurrent, cache.conv, strict=True)
    )
    assert ours.config.kv_bytes_per_token == kv_per_token == 1 * 2 * 2 * 32 * 2
    assert (
        ours.config.state_bytes_per_request
        == state
        == 3 * (4 * 16 * 24 * 4 + (2 * 2 * 16 + 4 * 24) * 3 * 4)
    )
    assert cache.recurrent[0].dtype == torch.float32 and cache.kv[0].dtype == torch.bfloat16


def test_multimodal_wrapper_config_uses_text_config(tmp_path: Path) -> None:
    text = tiny_dict = json.loads(random_qwen35().config.to_json_string())
    wrapper = {"model_type": "qwen3_5", "text_config": tiny_dict, "tie_word_embeddings": False,
               "vision_config": {"depth": 2}}  # fmt: skip
    text.pop("tie_word_embeddings")
    (tmp_path / "config.json").write_text(json.dumps(wrapper))
    info = read_hf_model_info(tmp_path)
    assert info.weight_prefix == "model.language_model."
    assert info.config.layer_pattern == "GGGF" and not info.config.tie_embeddings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "qwen3_next"}, "MoE"),
        ({"model_type": "llama"}, "not supported"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6}}, "rope_type"),
    ],
)
def test_unsupported_checkpoints_are_refused_by_name(
    tmp_path: Path, change: dict, message: str
) -> None:
    raw = json.loads(random_qwen35().config.to_json_string())
    raw.update(change)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UnsupportedCheckpointError, match=message):
        read_hf_model_info(tmp_path)


def test_missing_weight_is_an_error(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    make_checkpoint(tmp_path)
    (path,) = weight_files(tmp_path)
    tensors = load_file(str(path))
    tensors.pop("model.layers.3.self_attn.k_norm.weight")
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(UnsupportedCheckpointError, match="k_norm"):
        load_hf_model(tmp_path)
