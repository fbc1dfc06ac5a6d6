"""The "first token shipped" handoff (docs/architecture.md): prefill N tokens, sample token N+1,
ship KV[0, N) + states after N + that token; decode feeds the token at position N."""

from __future__ import annotations

import torch
from model_helpers import finite, make_cache, new_seq, prompt

from prfaas.model import HybridModel, SeqCache
from prfaas.model.layout import install_request, pack_request
from prfaas.model.sampler import make_generator, sample_one
from prfaas.sampling import SamplingParams

N, STEPS = 100, 6


def _decode(model, cache, seq, first: int) -> tuple[list[int], list[torch.Tensor]]:
    out, logits_seen, tok = [first], [], first
    for _ in range(STEPS):
        logits = model.decode(torch.tensor([tok]), cache, [seq])[0]
        seq.num_tokens += 1
        logits_seen.append(logits)
        tok = int(logits.argmax())
        out.append(tok)
    return out, logits_seen


def _prefill_side(model: HybridModel) -> tuple[list[bytes], int]:
    cache = make_cache(model)
    seq = new_seq(cache, 0, N, 0)
    params = SamplingParams(temperature=0.8, seed=7)
    first = sample_one(model.prefill(prompt(N), cache, seq), params, make_generator(params))
    seq.num_tokens = N
    return pack_request(cache, seq), first


def test_first_token_shipped_equals_one_process(tiny: HybridModel) -> None:
    # One process: prefill, sample, decode.
    cache = make_cache(tiny)
    seq = new_seq(cache, 0, N + STEPS, 0)
    params = SamplingParams(temperature=0.8, seed=7)
    first = sample_one(tiny.prefill(prompt(N), cache, seq), params, make_generator(params))
    seq.num_tokens = N
    local, _ = _decode(tiny, cache, seq, first)

    buffers, shipped = _prefill_side(tiny)
    assert shipped == first
    dst = make_cache(tiny)
    dst_seq = SeqCache([6, 3], 2, N)
    install_request(dst, dst_seq, buffers)
    remote, _ = _decode(tiny, dst, dst_seq, shipped)
    assert remote == local


def test_reapplying_last_prompt_token_on_decode_side_is_caught(tiny: HybridModel) -> None:
    buffers, first = _prefill_side(tiny)
    good_cache, bad_cache = make_cache(tiny), make_cache(tiny)
    good = SeqCache([0, 1], 0, N)
    install_request(good_cache, good, buffers)
    _, good_logits = _decode(tiny, good_cache, good, first)
    # Wrong protocol: the decode side feeds prompt token N again before the first token.
    bad = SeqCache([0, 1], 0, N)
    install_request(bad_cache, bad, buffers)
    last_prompt = int(prompt(N)[-1])
    tiny.decode(torch.tensor([last_prompt]), bad_cache, [bad])
    bad.num_tokens += 1
    _, bad_logits = _decode(tiny, bad_cache, bad, first)
    diff = (finite(tiny, bad_logits[0]) - finite(tiny, good_logits[0])).abs().max()
    assert diff > 1e-2
