"""Sampler: greedy, seeded reproducibility, top-k/top-p support, stop conditions."""

from __future__ import annotations

import pytest
import torch

from prfaas.model import EOS_ID
from prfaas.model.sampler import make_generator, sample, sample_one
from prfaas.sampling import FinishReason, SamplingParams, check_stop

LOGITS = torch.tensor([0.0, 3.0, 2.5, 1.0, -1.0, 2.9])


def _draws(params: SamplingParams, n: int = 300) -> list[int]:
    gen = make_generator(params)
    return [sample_one(LOGITS, params, gen) for _ in range(n)]


def test_greedy_is_argmax() -> None:
    assert sample_one(LOGITS, SamplingParams(temperature=0)) == 1


def test_seeded_requests_reproduce_and_differ_by_seed() -> None:
    a = _draws(SamplingParams(temperature=1.0, seed=3))
    assert a == _draws(SamplingParams(temperature=1.0, seed=3))
    assert a != _draws(SamplingParams(temperature=1.0, seed=4))
    assert len(set(a)) >= 4


def test_top_k_restricts_support() -> None:
    assert set(_draws(SamplingParams(top_k=2, seed=0))) == {1, 5}


def test_top_p_restricts_support() -> None:
    # Probabilities ~[.02, .37, .22, .05, .01, .33]: 0.6 needs tokens 1 and 5 (0.70); 0.75 adds 2.
    assert set(_draws(SamplingParams(top_p=0.6, seed=0))) == {1, 5}
    assert set(_draws(SamplingParams(top_p=0.75, seed=0))) == {1, 2, 5}


def test_batch_sampling_uses_each_requests_generator() -> None:
    params = [SamplingParams(seed=1), SamplingParams(temperature=0)]
    gens = [make_generator(p) for p in params]
    rows = torch.stack([LOGITS, LOGITS])
    first = [sample(rows, params, gens)[0] for _ in range(20)]
    assert first == _draws(SamplingParams(seed=1), 20)


def test_stop_conditions() -> None:
    p = SamplingParams(max_tokens=3, stop_token_ids=(7,), stop_sequences=((4, 5),))
    assert check_stop([1], p, EOS_ID) is None
    assert check_stop([1, EOS_ID], p, EOS_ID) is FinishReason.STOP
    assert check_stop([1, EOS_ID], SamplingParams(ignore_eos=True), EOS_ID) is None
    assert check_stop([7], p, EOS_ID) is FinishReason.STOP
    assert check_stop([4, 5], p, EOS_ID) is FinishReason.STOP
    assert check_stop([1, 2, 3], p, EOS_ID) is FinishReason.LENGTH


def test_invalid_params_rejected() -> None:
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
