"""Batched decode over requests of different lengths vs each request decoded alone."""

from __future__ import annotations

import torch
from model_helpers import confident_argmax, finite, make_cache, new_seq, prompt

from prfaas.model import HybridModel

LENGTHS = [5, 64, 130, 1]
STEPS = 6


def _run(model: HybridModel, groups: list[list[int]], forced: list[list[int]] | None):
    """Prefill every request, then decode STEPS tokens in the given batch groups.

    Greedy when `forced` is None; otherwise feeds forced[r] (teacher forcing, so both runs see the
    same inputs even if a near-tie flips an argmax). Returns (tokens fed, logits per step) per request.
    """
    cache = make_cache(model, num_blocks=4 * len(LENGTHS), num_slots=len(LENGTHS))
    seqs, fed = [], []
    for r, n in enumerate(LENGTHS):
        seq = new_seq(cache, 4 * r, n + STEPS, r)
        fed.append([int(model.prefill(prompt(n, seed=r), cache, seq).argmax())])
        seq.num_tokens = n
        seqs.append(seq)
    logits_out: list[list[torch.Tensor]] = [[] for _ in LENGTHS]
    for step in range(STEPS):
        for group in groups:
            toks = [fed[r][step] if forced is None else forced[r][step] for r in group]
            logits = model.decode(torch.tensor(toks), cache, [seqs[r] for r in group])
            for row, r in enumerate(group):
                seqs[r].num_tokens += 1
                logits_out[r].append(logits[row])
                if forced is None:
                    fed[r].append(int(logits[row].argmax()))
    return fed, logits_out


def test_alone_and_batched_agree(tiny: HybridModel) -> None:
    tokens, alone = _run(tiny, [[r] for r in range(len(LENGTHS))], None)
    _, batched = _run(tiny, [list(range(len(LENGTHS)))], tokens)
    checked = 0
    for r in range(len(LENGTHS)):
        for a, b in zip(alone[r], batched[r], strict=True):
            # Not bit-exact across batch shapes (hybrid_model.md §5): tolerance on logits, and the
            # greedy token must agree wherever the top-1 margin exceeds that tolerance.
            torch.testing.assert_close(finite(tiny, b), finite(tiny, a), atol=1e-4, rtol=1e-4)
            want = confident_argmax(finite(tiny, a), 1e-3)
            if want is not None:
                assert int(finite(tiny, b).argmax()) == want
                checked += 1
    assert checked >= STEPS * len(LENGTHS) // 2
    assert len({tuple(t) for t in tokens}) == len(LENGTHS)


def test_decode_from_empty_request_matches_prefill(tiny: HybridModel) -> None:
    cache = make_cache(tiny)
    a = new_seq(cache, 0, 8, 0)
    b = new_seq(cache, 1, 8, 1)
    via_decode = tiny.decode(torch.tensor([7]), cache, [a])[0]
    via_prefill = tiny.prefill(torch.tensor([7]), cache, b)
    torch.testing.assert_close(
        finite(tiny, via_decode), finite(tiny, via_prefill), atol=1e-5, rtol=1e-5
    )
