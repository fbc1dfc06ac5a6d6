"""Native (C) decode kernels against their torch oracles, and the model's decode with and without
them. Skipped only where no C compiler exists (the reason is the loader's build error)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import finite, make_cache, new_seq, prompt

from prfaas.model import HybridModel
from prfaas.model.ops import native
from prfaas.model.ops.attention import causal_attention_ref, write_kv
from prfaas.model.ops.linear_attn import recurrent_gated_delta_rule_step
from prfaas.model.ops.native.loader import DISABLE_ENV

pytestmark = pytest.mark.skipif(
    native.library() is None, reason=f"native kernels unavailable: {native.load_error()}"
)


def test_exp_matches_expf_to_a_few_ulp() -> None:
    x = torch.cat([-torch.rand(50_000) * 87, -torch.rand(50_000) * 1e-3, torch.zeros(1)])
    got, want = native.exp_nonpositive(x), x.exp()
    assert float(((got - want).abs() / want).max()) < 1e-6
    assert float(native.exp_nonpositive(torch.tensor([-1e4]))[0]) < 1e-37  # clamped, not NaN


def test_sigmoid_and_silu_match_torch() -> None:
    """Both signs, large magnitudes (no overflow) and a length that leaves an 8-lane tail."""
    x = torch.cat([torch.randn(10_000) * 8, torch.tensor([0.0, -0.0, 100.0, -100.0, 1e4, -1e4])])
    x = torch.cat([x, torch.randn(3)])
    torch.testing.assert_close(native.sigmoid(x), torch.sigmoid(x), atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(native.sigmoid(x, silu=True), F.silu(x), atol=1e-7, rtol=1e-6)
    one = native.sigmoid(x[5:6], silu=True)  # an element's bits do not depend on its position
    assert torch.equal(one, native.sigmoid(x, silu=True)[5:6])


# d % 16 == 0 takes the 16-lane kernel where AVX-512 is built (query heads in pairs: G = 3 leaves a
# single, G = 1 only singles); d = 20 the 8-lane kernel with its scalar tails.
@pytest.mark.parametrize(
    ("hq", "hkv", "d"), [(4, 2, 16), (4, 1, 64), (6, 3, 20), (6, 2, 64), (2, 2, 128), (2, 1, 256)]
)
def test_paged_attention_matches_dense_oracle(hq: int, hkv: int, d: int) -> None:
    bs = 64
    kv = torch.full((12, bs, 2, hkv, d), float("nan"))  # unwritten rows poison any stray read
    lengths = [1, 64, 130, 33]
    tables = [[0], [3, 4], [8, 1, 6], [11]]
    keys = []
    for L, table in zip(lengths, tables, strict=True):
        k, v = torch.randn(L, hkv, d), torch.randn(L, hkv, d)
        write_kv(kv, table, 0, k, v)
        keys.append((k, v))
    q = torch.randn(len(lengths), hq, d)
    width = max(len(t) for t in tables)
    padded = torch.tensor([t + [0] * (width - len(t)) for t in tables])
    out = native.paged_decode_attention_native(q, kv, padded, torch.tensor(lengths))
    for b, (k, v) in enumerate(keys):
        want = causal_attention_ref(q[b : b + 1], k, v, q_offset=lengths[b] - 1)[0]
        torch.testing.assert_close(out[b], want, atol=2e-6, rtol=1e-5)


def test_paged_attention_refuses_a_length_past_its_table() -> None:
    kv = torch.zeros(4, 64, 2, 1, 16)
    with pytest.raises(ValueError, match="past its block table"):
        native.paged_decode_attention_native(
            torch.zeros(1, 2, 16), kv, torch.tensor([[0]]), torch.tensor([65])
        )
    with pytest.raises(ValueError, match="block id"):
        native.paged_decode_attention_native(
            torch.zeros(1, 2, 16), kv, torch.tensor([[4]]), torch.tensor([3])
        )


def test_gdn_step_updates_only_its_slots_like_the_oracle() -> None:
    B, H, dk, dv, slots_total = 3, 2, 16, 24, 5
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(B, H, dk, generator=g), dim=-1) * dk**-0.5
    k = F.normalize(torch.randn(B, H, dk, generator=g), dim=-1)
    v = torch.randn(B, H, dv, generator=g)
    beta = torch.rand(B, H, generator=g)
    logg = F.logsigmoid(torch.randn(B, H, generator=g))
    state = torch.randn(slots_total, H, dk, dv, generator=g)
    slots = torch.tensor([4, 0, 2])
    want_o, want_s = recurrent_gated_delta_rule_step(q, k, v, beta, logg, state[slots])
    before = state.clone()
    o = native.gdn_decode_step_native(q, k, v, beta, logg, state, slots)
    torch.testing.assert_close(o, want_o, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[slots], want_s, atol=1e-5, rtol=1e-5)
    untouched = torch.tensor([1, 3])
    assert torch.equal(state[untouched], before[untouched])


def _decode_logits(model: HybridModel) -> list[torch.Tensor]:
    """Prefill three requests of different lengths, then 4 batched decode steps; logits per step."""
    cache = make_cache(model, num_blocks=12, num_slots=3)
    seqs = []
    for r, n in enumerate([3, 70, 129]):
        seq = new_seq(cache, 4 * r, n + 4, r)
        model.prefill(prompt(n, seed=r), cache, seq)
        seq.num_tokens = n
        seqs.append(seq)
    out = []
    for step in range(4):
        logits = model.decode(torch.tensor([65 + step, 66, 67]), cache, seqs)
        for s in seqs:
            s.num_tokens += 1
        out.append(logits)
    return out


def test_model_decode_native_equals_torch_path(
    tiny: HybridModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _decode_logits(tiny)
    monkeypatch.setenv(DISABLE_ENV, "0")
    assert not native.usable(torch.zeros(1))
    slow = _decode_logits(tiny)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(finite(tiny, a), finite(tiny, b), atol=1e-5, rtol=1e-5)
        assert torch.equal(finite(tiny, a).argmax(-1), finite(tiny, b).argmax(-1))
