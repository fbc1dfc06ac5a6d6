"""Every error status of the front end, in the OpenAI error shape, plus client disconnects."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from prfaas.router.generation_backend import ContextTooLong, FakeBackend, Overloaded

if TYPE_CHECKING:
    from conftest import Served

MODEL = "fake-model"


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status
    return error


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": MODEL, "prompt": "p", "temperature": -1}, "temperature"),
        ({"model": MODEL, "prompt": "p", "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL}, "prompt"),
        ({"model": MODEL, "prompt": "p", "stop": 5}, "stop"),
        ({"model": MODEL, "prompt": ["a", "b"]}, "prompt"),
        ({"model": MODEL, "prompt": [1, 999]}, "prompt"),
        ({"model": MODEL, "prompt": "p", "seed": 2**64}, "seed"),
    ],
    ids=[
        "temperature",
        "max-tokens-0",
        "no-prompt",
        "stop-int",
        "batched",
        "bad-token-id",
        "seed-range",
    ],
)
def test_invalid_input_is_400_not_422(served: Served, body: dict, param: str) -> None:
    error = _error(httpx.post(f"{served.url}/v1/completions", json=body), 400)
    assert error["type"] == "BadRequestError"
    assert error["param"].startswith(param)


def test_invalid_json_and_chat_without_messages_are_400(served: Served) -> None:
    r = httpx.post(
        f"{served.url}/v1/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    _error(r, 400)
    _error(httpx.post(f"{served.url}/v1/chat/completions", json={"messages": []}), 400)


def test_n_greater_than_one_is_rejected(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        served.client().completions.create(model=MODEL, prompt="p", n=2)
    assert info.value.body["param"] == "n"
    assert "n=1" in info.value.body["message"]
    assert served.backend.requests == []


def test_api_key(serve) -> None:
    s = serve(FakeBackend(), api_key="sekret")
    with pytest.raises(openai.AuthenticationError):
        s.client(api_key="wrong").models.list()
    _error(httpx.post(f"{s.url}/v1/completions", json={"prompt": "p"}), 401)
    _error(httpx.get(f"{s.url}/v1/models", headers={"Authorization": "Basic c2VrcmV0"}), 401)
    out = s.client(api_key="sekret").completions.create(model=MODEL, prompt="p", max_tokens=1)
    assert out.choices[0].text == "a"
    # Probes stay open to load balancers and Prometheus.
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{s.url}{path}").status_code == 200


def test_unknown_model_is_404(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        served.client().chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "x"}]
        )
    assert "`gpt-9` does not exist" in info.value.body["message"]
    assert httpx.post(f"{served.url}/v1/nothing", json={}).json()["error"]["code"] == 404


@pytest.mark.parametrize("max_tokens", [None, 40], ids=["prompt-alone", "prompt-plus-max-tokens"])
def test_prompt_over_context_is_400_with_limit(serve, max_tokens: int | None) -> None:
    s = serve(FakeBackend(context_limit=32))
    prompt = "x" * (40 if max_tokens is None else 10)
    with pytest.raises(openai.BadRequestError) as info:
        s.client().completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens or 1)
    assert "maximum context length is 32 tokens" in info.value.body["message"]
    assert s.backend.requests == []


def test_backend_context_error_is_400(serve) -> None:
    s = serve(FakeBackend(fail_admission=ContextTooLong(77)))
    with pytest.raises(openai.BadRequestError, match="77 tokens"):
        s.client().completions.create(model=MODEL, prompt="p", stream=True)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_overloaded_is_429_with_retry_after(serve, stream: bool) -> None:
    s = serve(FakeBackend(fail_admission=Overloaded(retry_after_s=2.5)))
    body = {"model": MODEL, "prompt": "p", "stream": stream}
    r = httpx.post(f"{s.url}/v1/completions", json=body)
    _error(r, 429)
    assert r.headers["retry-after"] == "3"
    with pytest.raises(openai.RateLimitError):
        s.client().completions.create(model=MODEL, prompt="p", stream=stream)


def test_not_ready_is_503(serve) -> None:
    s = serve(FakeBackend(is_ready=False))
    _error(httpx.get(f"{s.url}/ready"), 503)
    assert httpx.get(f"{s.url}/health").status_code == 200
    with pytest.raises(openai.InternalServerError) as info:
        s.client().completions.create(model=MODEL, prompt="p")
    assert info.value.status_code == 503


def test_backend_failure_before_stream_is_500(serve) -> None:
    s = serve(FakeBackend(fail_after_tokens=0))
    _error(httpx.post(f"{s.url}/v1/completions", json={"prompt": "p"}), 500)


def test_backend_failure_mid_stream_is_an_error_event(serve) -> None:
    s = serve(FakeBackend(fail_after_tokens=3))
    r = httpx.post(
        f"{s.url}/v1/completions", json={"prompt": "p", "max_tokens": 10, "stream": True}
    )
    assert r.status_code == 200
    events = [e for e in r.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert '"error"' in events[-2] and "injected backend failure" in events[-2]
    with pytest.raises(openai.APIError, match="injected backend failure"):
        list(s.client().completions.create(model=MODEL, prompt="p", max_tokens=10, stream=True))
    assert s.wait_for_abort()


def test_client_disconnect_mid_stream_aborts(serve) -> None:
    s = serve(FakeBackend(token_delay_s=0.02))
    stream = s.client().completions.create(model=MODEL, prompt="p", max_tokens=3000, stream=True)
    received = [next(iter(stream)) for _ in range(3)]
    assert len(received) == 3
    stream.close()
    assert s.wait_for_abort() == [s.backend.requests[0].request_id]


def test_client_disconnect_before_response_aborts(serve) -> None:
    s = serve(FakeBackend(token_delay_s=0.02))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{s.url}/v1/completions", json={"prompt": "p", "max_tokens": 3000}, timeout=0.5)
    assert s.wait_for_abort() == [s.backend.requests[0].request_id]
    # Aborted long before the 60 s the generation would have taken.
    assert time.monotonic() - started < 30
