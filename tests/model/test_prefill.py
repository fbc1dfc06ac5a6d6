"""Prefill paths against the naive oracle and against each other (hybrid_model.md §5)."""

from __future__ import annotations

import pytest
import torch
from model_helpers import finite, make_cache, new_seq, prompt

from prfaas.model import ContextLengthError, HybridModel, SeqCache
from prfaas.model.reference import naive_forward


@pytest.mark.parametrize("n", [1, 2, 3, 63, 64, 65, 129])
def test_prefill_matches_naive_forward(tiny: HybridModel, n: int) -> None:
    tokens = prompt(n, seed=n)
    cache = make_cache(tiny)
    logits = tiny.prefill(tokens, cache, new_seq(cache, 0, n, 0))
    want = naive_forward(tiny, tokens)[-1]
    assert torch.isfinite(finite(tiny, logits)).all()
    torch.testing.assert_close(finite(tiny, logits), finite(tiny, want), atol=1e-4, rtol=1e-4)


def test_prefill_split_at_block_boundaries_is_bit_exact(tiny: HybridModel) -> None:
    tokens = prompt(300)
    cache = make_cache(tiny)
    one_shot = tiny.prefill(tokens, cache, new_seq(cache, 0, 300, 0))
    seq = new_seq(cache, 5, 300, 1)
    for a, b in [(0, 64), (64, 192), (192, 300)]:
        logits = tiny.prefill(tokens[a:b], cache, seq)
        seq.num_tokens = b
    assert torch.equal(logits, one_shot)
    for ra, rb in zip(cache.read_state(0), cache.read_state(1), strict=True):
        assert torch.equal(ra[0], rb[0]) and torch.equal(ra[1], rb[1])


def test_prefill_split_off_grid_is_close(tiny: HybridModel) -> None:
    tokens = prompt(150)
    cache = make_cache(tiny)
    one_shot = tiny.prefill(tokens, cache, new_seq(cache, 0, 150, 0))
    seq = new_seq(cache, 5, 150, 1)
    tiny.prefill(tokens[:100], cache, seq)
    seq.num_tokens = 100
    logits = tiny.prefill(tokens[100:], cache, seq)
    torch.testing.assert_close(finite(tiny, logits), finite(tiny, one_shot), atol=1e-4, rtol=1e-4)


def test_resume_from_state_checkpoint_equals_from_scratch(tiny: HybridModel) -> None:
    tokens = prompt(200)
    cache = make_cache(tiny)
    sink: dict[int, list] = {}
    seq = new_seq(cache, 0, 200, 0)
    full = tiny.prefill(
        tokens, cache, seq, checkpoint_positions=[64, 128, 192], checkpoint_sink=sink.__setitem__
    )
    assert sorted(sink) == [64, 128, 192]
    # A new request shares the first 128 tokens: reuse KV blocks 0-1 and the state at 128.
    resumed = SeqCache([0, 1, 9, 10], state_slot=2, num_tokens=128)
    cache.write_state(2, sink[128])
    logits = tiny.prefill(tokens[128:], cache, resumed)
    assert torch.equal(logits, full)


def test_sparse_checkpoint_positions_change_no_output(tiny: HybridModel) -> None:
    """The checkpoint rule picks positions; which ones changes neither logits nor the states."""
    tokens = prompt(200)
    dense: dict[int, list] = {}
    sparse: dict[int, list] = {}
    cache = make_cache(tiny)
    full = tiny.prefill(
        tokens,
        cache,
        new_seq(cache, 0, 200, 0),
        checkpoint_positions=[64, 128, 192],
        checkpoint_sink=dense.__setitem__,
    )
    cache2 = make_cache(tiny)
    logits = tiny.prefill(
        tokens,
        cache2,
        new_seq(cache2, 0, 200, 0),
        checkpoint_positions=[128],
        checkpoint_sink=sparse.__setitem__,
    )
    assert torch.equal(logits, full) and sorted(sparse) == [128]
    for (rec_d, conv_d), (rec_s, conv_s) in zip(dense[128], sparse[128], strict=True):
        assert torch.equal(rec_d, rec_s) and torch.equal(conv_d, conv_s)


@pytest.mark.parametrize("points", [[100], [128, 64], [256]])
def test_checkpoint_positions_are_checked(tiny: HybridModel, points: list[int]) -> None:
    cache = make_cache(tiny)
    with pytest.raises(ValueError, match="checkpoint position"):
        tiny.prefill(prompt(200), cache, new_seq(cache, 0, 200, 0), checkpoint_positions=points)


def test_checkpoints_are_copies(tiny: HybridModel) -> None:
    cache = make_cache(tiny)
    sink: dict[int, list] = {}
    seq = new_seq(cache, 0, 64, 0)
    tiny.prefill(
        prompt(64), cache, seq, checkpoint_positions=[64], checkpoint_sink=sink.__setitem__
    )
    rec, _ = sink[64][0]
    assert torch.equal(rec, cache.recurrent[0][0])
    cache.recurrent[0][0].zero_()
    assert rec.abs().sum() > 0


def test_on_layer_done_fires_in_layer_order_after_cache_written(tiny: HybridModel) -> None:
    cache = make_cache(tiny)
    seq = new_seq(cache, 0, 70, 0)
    seen = []

    def hook(layer: int, start: int, end: int) -> None:
        if cache.is_full(layer):
            # The layer's KV for [start, end) must be present now.
            kv = cache.kv[cache.ordinal(layer)]
            assert torch.isfinite(kv[seq.block_table[1], : end - 64]).all()
        seen.append((layer, start, end))

    tiny.prefill(prompt(70), cache, seq, on_layer_done=hook)
    assert seen == [(i, 0, 70) for i in range(tiny.config.num_layers)]


def test_prompt_over_max_context_is_a_clear_error(tiny: HybridModel) -> None:
    cache = make_cache(tiny, num_blocks=2)
    seq = SeqCache([0], 0, tiny.config.max_context - 1)
    with pytest.raises(ContextLengthError, match="max_context"):
        tiny.prefill(prompt(2), cache, seq)
    with pytest.raises(ContextLengthError):
        tiny.decode(torch.tensor([1]), cache, [SeqCache([0], 0, tiny.config.max_context)])


def test_prefill_then_decode_matches_naive(tiny: HybridModel) -> None:
    tokens = prompt(70)
    cache = make_cache(tiny)
    seq = new_seq(cache, 0, 80, 0)
    tiny.prefill(tokens[:66], cache, seq)
    seq.num_tokens = 66
    want = naive_forward(tiny, tokens)
    for t in range(66, 70):
        logits = tiny.decode(tokens[t : t + 1], cache, [seq])[0]
        seq.num_tokens += 1
        torch.testing.assert_close(
            finite(tiny, logits), finite(tiny, want[t]), atol=1e-4, rtol=1e-4
        )


def test_prefill_is_deterministic_and_outputs_vary(tiny: HybridModel) -> None:
    cache = make_cache(tiny)
    a = tiny.prefill(prompt(40), cache, new_seq(cache, 0, 40, 0))
    b = tiny.prefill(prompt(40), cache, new_seq(cache, 1, 40, 1))
    assert torch.equal(a, b)
    # Non-degenerate weights: different prompts give different greedy tokens.
    picks = {int(naive_forward(tiny, prompt(8, seed=s))[-1].argmax()) for s in range(6)}
    assert len(picks) >= 3


def test_row_tiling_of_long_prompts_matches_untiled(tiny: HybridModel, monkeypatch) -> None:
    import prfaas.model.layers as layers

    tokens = prompt(200)
    cache = make_cache(tiny)
    untiled = tiny.prefill(tokens, cache, new_seq(cache, 0, 200, 0))
    monkeypatch.setattr(layers, "ROW_TILE", 64)
    tiled = tiny.prefill(tokens, cache, new_seq(cache, 4, 200, 1))
    torch.testing.assert_close(finite(tiny, tiled), finite(tiny, untiled), atol=1e-5, rtol=1e-5)


def test_small_preset_prefill_and_decode_match_naive() -> None:
    from prfaas.model import get_preset

    small = HybridModel(get_preset("small"))
    tokens = prompt(66, seed=3)
    cache = make_cache(small, num_blocks=2, num_slots=1, block_size=64)
    seq = new_seq(cache, 0, 66, 0)
    logits = small.prefill(tokens[:65], cache, seq)
    seq.num_tokens = 65
    step = small.decode(tokens[65:], cache, [seq])[0]
    want = naive_forward(small, tokens)
    torch.testing.assert_close(finite(small, logits), finite(small, want[64]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(finite(small, step), finite(small, want[65]), atol=1e-4, rtol=1e-4)
