"""Every client input is a 4xx in the OpenAI error shape, never a 500 (issue 10, "bad input").

Bodies are sent as raw bytes where JSON can say what Python's encoder will not (NaN, lone
surrogates). Each refused request must never reach the backend.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Served

MODEL = "fake-model"
CHAT = [{"role": "user", "content": "hi"}]


def _post(served: Served, path: str, body: dict[str, Any] | str | bytes) -> httpx.Response:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    headers = {"content-type": "application/json"}
    return httpx.post(f"{served.url}{path}", content=body, headers=headers, timeout=10)


def _refused(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status
    return error


# (body of /v1/completions, the param the error must name)
BAD_COMPLETIONS = {
    "seed-int64-overflow": ({"prompt": "p", "seed": 2**63}, "seed"),
    "top_k-int32-overflow": ({"prompt": "p", "top_k": 2**31}, "top_k"),
    "top_k-below-minus-one": ({"prompt": "p", "top_k": -2}, "top_k"),
    "stop_token_ids-int32-overflow": (
        {"prompt": "p", "stop_token_ids": [2**31]},
        "stop_token_ids[0]",
    ),
    "stop_token_ids-negative": ({"prompt": "p", "stop_token_ids": [5, -1]}, "stop_token_ids[1]"),
    "stop_token_ids-outside-vocab": ({"prompt": "p", "stop_token_ids": [300]}, "stop_token_ids"),
    "max_tokens-int32-overflow": ({"prompt": "p", "max_tokens": 2**31}, "max_tokens"),
    "max_tokens-negative": ({"prompt": "p", "max_tokens": -1}, "max_tokens"),
    "n-huge": ({"prompt": "p", "n": 2**40}, "n"),
    "prompt-id-70000": ({"prompt": [1, 70000]}, "prompt"),
    "prompt-id-minus-3": ({"prompt": [-3]}, "prompt"),
    "prompt-id-outside-vocab": ({"prompt": [[259]]}, "prompt"),
    "prompt-wrong-type": ({"prompt": {"text": "p"}}, "prompt"),
    "max_tokens-wrong-type": ({"prompt": "p", "max_tokens": "ten"}, "max_tokens"),
    "temperature-wrong-type": ({"prompt": "p", "temperature": [1]}, "temperature"),
    "stream-wrong-type": ({"prompt": "p", "stream": {"on": 1}}, "stream"),
}


@pytest.mark.parametrize("body, param", BAD_COMPLETIONS.values(), ids=BAD_COMPLETIONS.keys())
def test_out_of_range_and_wrong_types_are_400(served: Served, body: dict, param: str) -> None:
    error = _refused(_post(served, "/v1/completions", {"model": MODEL, **body}))
    assert error["type"] == "BadRequestError"
    assert error["param"] == param
    assert served.backend.requests == []


@pytest.mark.parametrize(
    "raw, param",
    [
        ('{"prompt": "p", "temperature": NaN}', "temperature"),
        ('{"prompt": "p", "temperature": Infinity}', "temperature"),
        ('{"prompt": "p", "top_p": NaN}', "top_p"),
        ('{"prompt": "p", "top_p": -Infinity}', "top_p"),
    ],
    ids=["temperature-nan", "temperature-inf", "top_p-nan", "top_p-minus-inf"],
)
def test_non_finite_sampling_values_are_400(served: Served, raw: str, param: str) -> None:
    error = _refused(_post(served, "/v1/completions", raw))
    assert error["param"] == param
    assert "finite" in error["message"]
    assert served.backend.requests == []


def test_lone_surrogates_are_400_not_tokenizer_crashes(served: Served) -> None:
    error = _refused(_post(served, "/v1/completions", '{"prompt": "\\ud800"}'))
    assert (error["param"], "not valid Unicode" in error["message"]) == ("prompt", True)
    chat = '{"messages": [{"role": "user", "content": "ok \\udfff"}]}'
    error = _refused(_post(served, "/v1/chat/completions", chat))
    assert error["param"] == "messages"
    # Echoed back in the 404 message, the surrogate must not break the JSON response.
    error = _refused(_post(served, "/v1/completions", '{"prompt": "p", "model": "\\ud800"}'), 404)
    assert (error["param"], error["message"]) == ("model", "The model `?` does not exist.")
    assert served.backend.requests == []


def test_malformed_json_names_the_syntax_error_not_a_position_param(served: Served) -> None:
    error = _refused(_post(served, "/v1/completions", b'{"prompt": "p",'))
    assert error["param"] is None
    assert error["message"].startswith("The request body is not valid JSON: ")
    assert "at character 15" in error["message"]
    error = _refused(_post(served, "/v1/completions", b"\xff\xfe"))
    assert error["param"] is None
    for not_an_object in (b"[1, 2]", b'"p"', b""):
        error = _refused(_post(served, "/v1/chat/completions", not_an_object))
        assert (error["param"], error["message"]) == (
            None,
            "The request body must be a JSON object.",
        )


def test_nested_field_errors_name_their_path(served: Served) -> None:
    error = _refused(_post(served, "/v1/chat/completions", {"messages": [{"content": "x"}]}))
    assert error["param"] == "messages[0].role"
    assert error["message"] == "messages[0].role: Field required"


def test_negative_seed_is_served_as_its_uint64_twos_complement(served: Served) -> None:
    r = _post(served, "/v1/completions", {"prompt": "p", "max_tokens": 1, "seed": -1})
    assert r.status_code == 200, r.text
    assert served.backend.requests[0].sampling.seed == 2**64 - 1


UNSUPPORTED = {
    "completions-logprobs": ("/v1/completions", {"logprobs": 0}, "logprobs"),
    "completions-echo": ("/v1/completions", {"echo": True}, "echo"),
    "completions-best_of": ("/v1/completions", {"best_of": 2}, "best_of"),
    "completions-suffix": ("/v1/completions", {"suffix": "end"}, "suffix"),
    "chat-logprobs": ("/v1/chat/completions", {"logprobs": True}, "logprobs"),
    "chat-top_logprobs": ("/v1/chat/completions", {"top_logprobs": 3}, "top_logprobs"),
    "chat-tools": ("/v1/chat/completions", {"tools": [{"type": "function"}]}, "tools"),
    "chat-tool_choice": ("/v1/chat/completions", {"tool_choice": "required"}, "tool_choice"),
    "chat-response_format": (
        "/v1/chat/completions",
        {"response_format": {"type": "json_object"}},
        "response_format",
    ),
    "chat-n": ("/v1/chat/completions", {"n": 2}, "n"),
    "chat-logit_bias": ("/v1/chat/completions", {"logit_bias": {"97": 100}}, "logit_bias"),
    "chat-presence_penalty": (
        "/v1/chat/completions",
        {"presence_penalty": 0.5},
        "presence_penalty",
    ),
    "chat-min_p": ("/v1/chat/completions", {"min_p": 0.1}, "min_p"),
}


@pytest.mark.parametrize("path, fields, param", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_fields_that_change_the_output_are_refused_by_name(
    served: Served, path: str, fields: dict, param: str
) -> None:
    prompt = {"messages": CHAT} if "chat" in path else {"prompt": "p"}
    error = _refused(_post(served, path, {**prompt, **fields}))
    assert error["param"] == param
    assert param in error["message"]
    assert served.backend.requests == []


def test_unsupported_fields_at_their_no_op_values_are_served(served: Served) -> None:
    no_ops = {
        "logprobs": False,
        "top_logprobs": 0,
        "best_of": 1,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
    }
    r = _post(served, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 2, **no_ops})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "ab"


def test_openapi_describes_the_request_bodies(served: Served) -> None:
    spec = httpx.get(f"{served.url}/openapi.json").json()
    body = spec["paths"]["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = spec["components"]["schemas"][name]["properties"]
    assert {"prompt", "max_tokens", "seed", "stop_token_ids", "logprobs", "echo"} <= set(fields)
    top_k = next(s for s in fields["top_k"]["anyOf"] if s.get("type") == "integer")
    assert (top_k["minimum"], top_k["maximum"]) == (-1, 2**31 - 1)
    assert "/v1/chat/completions" in spec["paths"]
