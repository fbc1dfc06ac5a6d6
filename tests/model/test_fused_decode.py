"""The fused native decode step (prfaas/model/fused_decode.py + ops/native/fused_decode.c) against
the layer-by-layer torch path (its oracle) on shapes the presets do not cover, its batch
invariance, and its refusal of addresses outside the cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from model_helpers import finite, make_cache, new_seq, prompt

from prfaas.model import HybridModel, get_preset
from prfaas.model.fused_decode import FusedDecode
from prfaas.model.ops import native
from prfaas.model.ops.native.loader import DISABLE_ENV

pytestmark = pytest.mark.skipif(
    native.library() is None, reason=f"native kernels unavailable: {native.load_error()}"
)

# GVA (2 key heads, 4 value heads), no attention output gate, partial RoPE, odd head dims (tails of
# the 8-wide loops), Qwen3.5-style zero-centred norms and q/k L2 eps, tied embeddings.
ODD = dataclasses.replace(
    get_preset("tiny"),
    d_model=72,
    gdn_num_k_heads=2,
    gdn_num_v_heads=4,
    gdn_head_k_dim=20,
    gdn_head_v_dim=12,
    n_q_heads=3,
    n_kv_heads=1,
    head_dim=36,
    rotary_dim=12,
    attn_output_gate=False,
    ffn_dim=90,
    norm_offset=1.0,
    gdn_qk_norm_eps=1e-6,
    tie_embeddings=True,
)


def _steps(model: HybridModel, lengths: list[int], steps: int) -> list[torch.Tensor]:
    cache = make_cache(model, num_blocks=4 * len(lengths), num_slots=len(lengths))
    seqs = []
    for r, n in enumerate(lengths):
        seq = new_seq(cache, 4 * r, n + steps, r)
        if n:
            model.prefill(prompt(n, seed=r), cache, seq)
        seq.num_tokens = n
        seqs.append(seq)
    out = []
    for step in range(steps):
        logits = model.decode(
            torch.tensor([40 + step + r for r in range(len(lengths))]), cache, seqs
        )
        for s in seqs:
            s.num_tokens += 1
        out.append(logits)
    return out


@pytest.mark.parametrize("config", [get_preset("tiny"), ODD], ids=["tiny", "odd-shapes"])
def test_fused_step_matches_torch_path(config, monkeypatch: pytest.MonkeyPatch) -> None:
    model = HybridModel(config)
    assert FusedDecode.applies(model)
    fast = _steps(model, [0, 5, 70, 129], 3)  # 0: a fresh request decoded from the empty state
    monkeypatch.setenv(DISABLE_ENV, "0")
    assert not FusedDecode.applies(model)
    slow = _steps(model, [0, 5, 70, 129], 3)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(finite(model, a), finite(model, b), atol=2e-5, rtol=2e-5)


def test_fused_step_is_batch_invariant(tiny: HybridModel) -> None:
    """A request's logits are the same bits alone or in a batch (same kernel order per row): 11
    requests cover the projections' whole 8-row groups and a 3-row tail."""
    lengths = [3, 9, 17, 4, 12, 6, 20, 8, 5, 15, 11]
    batched = _steps(tiny, lengths, 2)
    for r, n in enumerate(lengths):
        cache = make_cache(tiny, num_blocks=4 * len(lengths), num_slots=len(lengths))
        seq = new_seq(cache, 4 * r, n + 2, r)
        tiny.prefill(prompt(n, seed=r), cache, seq)
        seq.num_tokens = n
        for step in range(2):
            alone = tiny.decode(torch.tensor([40 + step + r]), cache, [seq])[0]
            seq.num_tokens += 1
            assert torch.equal(alone, batched[step][r])


def test_fused_plan_follows_in_place_weight_writes(tiny: HybridModel, monkeypatch) -> None:
    """The packed projections are copies: a weight written in place (as load_state_dict does)
    rebuilds the plan, and the step then matches the torch path on the new weights."""
    model = HybridModel(tiny.config)
    _steps(model, [5], 1)
    plan = FusedDecode.for_model(model)
    with torch.no_grad():
        model.blocks[0].mlp.down.weight.mul_(-2.0)
        model.lm_head.weight.add_(0.5)
    fast = _steps(model, [5, 9], 2)
    assert FusedDecode.for_model(model) is not plan
    monkeypatch.setenv(DISABLE_ENV, "0")
    slow = _steps(model, [5, 9], 2)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(finite(model, a), finite(model, b), atol=2e-5, rtol=2e-5)


def test_fused_step_refuses_addresses_outside_the_cache(tiny: HybridModel) -> None:
    cache = make_cache(tiny, num_blocks=4, num_slots=2)
    bad_block = new_seq(cache, 0, 8, 0)
    bad_block.block_table[0] = 99  # past num_blocks
    ok = new_seq(cache, 1, 8, 1)
    for seq in (bad_block, ok):
        seq.num_tokens = 1  # not fresh: decode does not zero its state before the native call
    before = [t.clone() for t in cache.kv + cache.recurrent + cache.conv]
    with pytest.raises(ValueError, match="outside the cache"):
        tiny.decode(torch.tensor([7]), cache, [bad_block])
    with pytest.raises(ValueError, match="outside the cache"):
        tiny.decode(torch.tensor([tiny.config.vocab_size]), cache, [ok])
    after = cache.kv + cache.recurrent + cache.conv
    for a, b in zip(before, after, strict=True):  # nothing written (NaN fill compares equal)
        assert torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)
