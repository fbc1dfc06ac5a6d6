"""A checkpoint's own tokenizer, chat template and EOS ids, against transformers' AutoTokenizer
(the oracle: same ids, same rendered chat text), and as the router uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from hf_fixtures import make_checkpoint  # noqa: E402

from prfaas.router.http_requests import RequestBuilder  # noqa: E402
from prfaas.router.main import _served_model  # noqa: E402
from prfaas.router.openai_protocol import ChatCompletionRequest  # noqa: E402
from prfaas.tokenizer.hf_tokenizer import HFTokenizer  # noqa: E402
from prfaas.topology import Topology  # noqa: E402

TEXTS = ["Hello world, hello prfaas!", "The lazy dog — ünïcödé 🦊 jumps", " leading space", ""]
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello fox"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "jumps over the lazy dog?"},
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("qwen35"))


def test_encode_decode_and_chat_match_transformers(checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(checkpoint))
    ours = HFTokenizer(checkpoint)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == ref.encode(text, add_special_tokens=False)
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True) == text
    want = ref.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    got = ours.render_chat(MESSAGES)
    assert got == want and got.endswith("<|im_start|>assistant\n")
    assert ours.encode(got) == ref.encode(want, add_special_tokens=False)
    # Special tokens of the template are single ids, not spelled out in bytes.
    assert ours.encode("<|im_start|>") == [ref.convert_tokens_to_ids("<|im_start|>")]


def test_stream_decoder_never_splits_a_character(checkpoint: Path) -> None:
    tok = HFTokenizer(checkpoint)
    text = "ünïcödé 🦊 fox"
    ids = tok.encode(text)
    dec = tok.stream_decoder()
    pieces = [dec.push([i]) for i in ids] + [dec.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    assert len([p for p in pieces if p]) > 3  # streamed, not all at the end


def test_router_uses_the_checkpoint_tokenizer_template_and_eos(checkpoint: Path) -> None:
    tokenizer, name = _served_model(Topology(), str(checkpoint))
    assert name == checkpoint.name
    max_context = 2048  # the checkpoint's limit; the router learns it from its workers
    assert isinstance(tokenizer, HFTokenizer)
    im_end, eot = tokenizer.encode("<|im_end|>")[0], tokenizer.encode("<|endoftext|>")[0]
    assert tokenizer.eos_token_ids == (im_end, eot) and tokenizer.eos_token_id == im_end
    builder = RequestBuilder(tokenizer, name, max_context)
    body = ChatCompletionRequest(model=name, messages=MESSAGES, max_tokens=8)
    ids = builder.chat_prompt(body)
    assert ids == tokenizer.encode(tokenizer.render_chat(MESSAGES))
    req = builder.generation_request("r1", body, ids, 8)
    assert req.sampling.stop_token_ids == (eot,)  # the second EOS; the worker knows the first
    ignoring = ChatCompletionRequest(model=name, messages=MESSAGES, ignore_eos=True)
    assert builder.generation_request("r2", ignoring, ids, 8).sampling.stop_token_ids == ()
