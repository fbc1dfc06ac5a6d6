"""EngineCore over the real tiny model: engine paths give the plain model's greedy tokens."""

from __future__ import annotations

import pytest
import torch

from prfaas.engine.backend_torch import TorchBackend
from prfaas.engine.core import EngineCore, generate
from prfaas.model import EOS_ID, HybridCache, HybridModel, SeqCache, get_preset
from prfaas.request import Request, RequestKind
from prfaas.sampling import SamplingParams

BLOCK = 64
MAX_TOKENS = 6
GREEDY = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)


@pytest.fixture(scope="module")
def model() -> HybridModel:
    return HybridModel(get_preset("tiny"))


def make(model: HybridModel, **kw: object) -> EngineCore:
    kw.setdefault("max_num_batched_tokens", 128)
    return EngineCore(TorchBackend(model, block_size=BLOCK), cache_budget_bytes=8 << 20, **kw)  # type: ignore[arg-type]


def plain_greedy(model: HybridModel, prompt: list[int], n: int) -> list[int]:
    """One-shot prefill then one-token decodes on a private cache: the plain reference."""
    cache = HybridCache(model.config, num_blocks=8, num_slots=1, block_size=BLOCK)
    seq = SeqCache(block_table=list(range(8)), state_slot=0, num_tokens=0)
    out = [int(model.prefill(torch.tensor(prompt), cache, seq).argmax())]
    seq.num_tokens = len(prompt)
    while len(out) < n:
        logits = model.decode(torch.tensor([out[-1]]), cache, [seq])
        seq.num_tokens += 1
        out.append(int(logits[0].argmax()))
    return out


def prompts() -> list[list[int]]:
    shared = [(i * 37 + 11) % 256 for i in range(2 * BLOCK)]
    return [
        [5],
        [(i * 13) % 256 for i in range(BLOCK)],
        [(i * 7 + 3) % 256 for i in range(BLOCK + 37)],
        shared + [1, 2, 3],
        shared + [9] * 50,
        [(i * 29) % 256 for i in range(3 * BLOCK + 5)],
    ]


def test_engine_matches_plain_model_and_prefix_hits(model):
    ps = prompts()
    expected = [plain_greedy(model, p, MAX_TOKENS) for p in ps]
    eng = make(model)
    assert generate(eng, ps, GREEDY, eos_token_id=EOS_ID) == expected
    eng.assert_no_leaks()
    # Second pass: every prompt over one block hits the cache and yields identical tokens.
    reqs = [Request(f"again-{i}", p, GREEDY, eos_token_id=EOS_ID) for i, p in enumerate(ps)]
    for r in reqs:
        eng.add_request(r)
    while eng.has_work:
        eng.step()
    assert [r.output_token_ids for r in reqs] == expected
    hits = [r.num_cached_tokens for r in reqs]
    assert hits == [0, 0, BLOCK, 2 * BLOCK, 2 * BLOCK, 3 * BLOCK]
    eng.assert_no_leaks()


def test_prefill_only_copy_bytes_decode_only_handoff(model):
    prompt = prompts()[4]
    n = len(prompt)
    prefill, decode = make(model), make(model)
    p = Request("x", prompt, GREEDY, kind=RequestKind.PREFILL_ONLY, eos_token_id=EOS_ID)
    d = Request("x", prompt, GREEDY, kind=RequestKind.DECODE_ONLY, eos_token_id=EOS_ID)
    prefill.add_request(p)
    decode.add_request(d)
    first = None
    while prefill.has_work:
        for out in prefill.step():
            first = out.new_token_ids[0]
    assert first is not None
    specs = prefill.transfer_layout("x")
    for layer, dst in enumerate(decode.receive_segments("x")):
        src = b"".join(bytes(v) for v in prefill.layer_segments("x", layer, 0, n))
        assert len(src) == specs[layer].nbytes == sum(v.nbytes for v in dst)
        off = 0
        for v in dst:
            v[:] = src[off : off + v.nbytes]
            off += v.nbytes
    prefill.release("x")
    decode.mark_kv_ready("x", first)
    while decode.has_work:
        decode.step()
    assert d.output_token_ids == plain_greedy(model, prompt, MAX_TOKENS)
    prefill.assert_no_leaks()
    decode.assert_no_leaks()


def test_a_request_whose_sampling_raises_fails_alone(model: HybridModel) -> None:
    """A NaN temperature (past every validation, as a bug elsewhere would let it through) makes
    sampling raise; only that request fails, its batch mates keep the reference tokens."""
    engine = make(model)
    poisoned = SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    object.__setattr__(poisoned, "temperature", float("nan"))
    good_prompts = prompts()[1:3]
    good = [Request(f"good-{i}", p, GREEDY) for i, p in enumerate(good_prompts)]
    bad = Request("bad", [(i * 3) % 256 for i in range(40)], poisoned)
    for req in [good[0], bad, good[1]]:
        engine.add_request(req)
    while engine.has_work:
        engine.step()
    assert bad.status.value == "failed" and "probability tensor" in (bad.error or "")
    for req, prompt in zip(good, good_prompts, strict=True):
        assert req.output_token_ids == plain_greedy(model, prompt, MAX_TOKENS)
    engine.assert_no_leaks()
