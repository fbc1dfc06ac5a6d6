"""OpenAI conformance of the HTTP front end, driven by the official `openai` client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from prfaas.router.generation_backend import FakeBackend

if TYPE_CHECKING:
    from conftest import Served

BOS = 256
MODEL = "fake-model"
CHAT = [{"role": "user", "content": "hello"}]


def test_models_health_ready(served: Served) -> None:
    models = served.client().models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert httpx.get(f"{served.url}/health").status_code == 200
    assert httpx.get(f"{served.url}/ready").status_code == 200


def test_served_model_name_is_configurable(serve) -> None:
    s = serve(FakeBackend(), served_model_name="my-model")
    assert [m.id for m in s.client().models.list().data] == ["my-model"]
    out = s.client().completions.create(model="my-model", prompt="x", max_tokens=2)
    assert out.model == "my-model"


def test_completion_text_and_usage(served: Served) -> None:
    out = served.client().completions.create(model=MODEL, prompt="hi!", max_tokens=6)
    choice = out.choices[0]
    assert (choice.text, choice.finish_reason) == ("abc ab", "length")
    assert out.object == "text_completion"
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (
        4,
        6,
        10,
    )
    assert out.usage.prompt_tokens_details.cached_tokens == 2
    assert served.backend.requests[0].prompt_token_ids == (BOS, *b"hi!")


@pytest.mark.parametrize(
    "prompt, expected_ids",
    [(["one"], (BOS, *b"one")), ([7, 8, 9], (7, 8, 9))],
    ids=["list-of-one-string", "token-ids"],
)
def test_completion_prompt_forms(served: Served, prompt, expected_ids) -> None:
    out = served.client().completions.create(model=MODEL, prompt=prompt, max_tokens=3)
    assert out.usage.prompt_tokens == len(expected_ids)
    assert served.backend.requests[0].prompt_token_ids == expected_ids


def test_completion_default_max_tokens_is_16(served: Served) -> None:
    out = served.client().completions.create(model=MODEL, prompt="x")
    assert out.usage.completion_tokens == 16


def test_chat_completion(served: Served) -> None:
    out = served.client().chat.completions.create(
        model=MODEL, messages=CHAT, max_completion_tokens=5, temperature=0, seed=3, top_p=0.5
    )
    message = out.choices[0].message
    assert (message.role, message.content, out.choices[0].finish_reason) == (
        "assistant",
        "abc a",
        "length",
    )
    assert out.object == "chat.completion"
    assert out.usage.completion_tokens == 5
    sampling = served.backend.requests[0].sampling
    assert (sampling.temperature, sampling.seed, sampling.top_p, sampling.max_tokens) == (
        0,
        3,
        0.5,
        5,
    )
    prompt = bytes(i for i in served.backend.requests[0].prompt_token_ids if i < 256).decode()
    assert prompt == "<|user|>\nhello\n<|assistant|>\n"


def test_chat_max_tokens_defaults_to_the_rest_of_the_context(serve) -> None:
    s = serve(FakeBackend(context_limit=64))
    out = s.client().chat.completions.create(model=MODEL, messages=CHAT)
    assert out.usage.prompt_tokens + out.usage.completion_tokens == 64


def test_stream_completion_matches_non_stream(served: Served) -> None:
    client = served.client()
    full = client.completions.create(model=MODEL, prompt="p", max_tokens=9).choices[0].text
    chunks = list(client.completions.create(model=MODEL, prompt="p", max_tokens=9, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    assert all(c.usage is None for c in chunks)


def test_stream_chat_with_include_usage(served: Served) -> None:
    stream = served.client().chat.completions.create(
        model=MODEL,
        messages=CHAT,
        max_completion_tokens=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert (usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (7, 2)
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == "abc abc"


def test_stream_continuous_usage_counts_up(served: Served) -> None:
    stream = served.client().completions.create(
        model=MODEL,
        prompt="p",
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True},
    )
    counts = [c.usage.completion_tokens for c in stream]
    assert counts == [1, 2, 3, 4, 4, 4]


def test_raw_sse_framing_ends_with_done(served: Served) -> None:
    body = {"model": MODEL, "prompt": "p", "max_tokens": 2, "stream": True}
    r = httpx.post(f"{served.url}/v1/completions", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = r.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: ") for e in events[:-1])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_stop_string_cuts_text_and_aborts(served: Served, stream: bool) -> None:
    kwargs = {"model": MODEL, "prompt": "p", "max_tokens": 50, "stop": ["zz", "c a"]}
    client = served.client()
    if stream:
        chunks = list(client.completions.create(stream=True, **kwargs))
        text = "".join(c.choices[0].text for c in chunks)
        reason = chunks[-1].choices[0].finish_reason
    else:
        out = client.completions.create(**kwargs)
        text, reason = out.choices[0].text, out.choices[0].finish_reason
        assert out.choices[0].model_extra["stop_reason"] == "c a"
    assert (text, reason) == ("ab", "stop")
    assert served.wait_for_abort() == [served.backend.requests[0].request_id]


def test_stop_null_and_single_string(served: Served) -> None:
    client = served.client()
    out = client.completions.create(model=MODEL, prompt="p", max_tokens=8, stop=None)
    assert out.choices[0].text == "abc abc "
    out = client.completions.create(model=MODEL, prompt="p", max_tokens=8, stop=" ")
    assert (out.choices[0].text, out.choices[0].finish_reason) == ("abc", "stop")


def test_eos_stops_unless_ignore_eos(serve) -> None:
    client = serve(FakeBackend(eos_after=3)).client()
    out = client.completions.create(model=MODEL, prompt="p", max_tokens=10)
    assert (out.usage.completion_tokens, out.choices[0].finish_reason) == (3, "stop")
    out = client.completions.create(
        model=MODEL, prompt="p", max_tokens=10, extra_body={"ignore_eos": True}
    )
    assert (out.usage.completion_tokens, out.choices[0].finish_reason) == (10, "length")
    assert len(out.choices[0].text) == 10


def test_multibyte_text_is_never_split(serve) -> None:
    client = serve(FakeBackend(tokens=tuple("é€".encode()))).client()
    chunks = list(client.completions.create(model=MODEL, prompt="p", max_tokens=10, stream=True))
    pieces = [c.choices[0].text for c in chunks]
    assert "".join(pieces) == "é€é€"
    assert all("\ufffd" not in p for p in pieces)


def test_unknown_fields_are_ignored(served: Served) -> None:
    # Fields prfaas does not know are ignored; known ones that change the output and are not
    # implemented (min_p, repetition_penalty, ...) are refused (tests/router/test_http_input.py).
    out = served.client().completions.create(
        model=MODEL,
        prompt="p",
        max_tokens=2,
        user="u1",
        extra_body={"min_p": 0.0, "repetition_penalty": 1.0, "top_k": 5, "made_up": {"x": 1}},
    )
    assert out.choices[0].text == "ab"
    assert served.backend.requests[0].sampling.top_k == 5


def test_tokenizer_files_are_served(serve, tmp_path) -> None:
    from prfaas.data import tokenizer_dir

    s = serve(FakeBackend(), tokenizer_dir=tokenizer_dir())
    got = httpx.get(f"{s.url}/v1/tokenizer/tokenizer.json")
    assert got.status_code == 200
    assert got.content == (tokenizer_dir() / "tokenizer.json").read_bytes()
    config = httpx.get(f"{s.url}/v1/tokenizer/tokenizer_config.json").json()
    assert config["eos_token"] == "<|eos|>"
    # Only the client files, never another path under or beside the directory.
    for name in ("README.md", "..%2Fcase_study%2Fcase_study.toml", "__init__.py"):
        assert httpx.get(f"{s.url}/v1/tokenizer/{name}").status_code == 404
    bare = serve(FakeBackend())  # no tokenizer directory known
    assert httpx.get(f"{bare.url}/v1/tokenizer/tokenizer.json").status_code == 404
