"""OpenAI request bodies (as vLLM accepts them) and the JSON objects prfaas answers with.

Unknown fields are accepted and ignored (`extra="allow"`), because real clients send vLLM
extensions that do not matter. Known fields that would change the output and that prfaas does not
implement (`UNSUPPORTED_FIELDS`) are declared, so the OpenAPI schema shows them, and refused with a
400 naming the field unless left at their no-op value. Numeric bounds match the wire
(`prfaas/request_limits.py`), so nothing that passes here can overflow a proto field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from prfaas.request_limits import INT32_MAX, INT64_MAX, INT64_MIN, MAX_OPENAI_TEMPERATURE
from prfaas.router.http_generation import TextFinished

WireTokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]
"""A token id as the wire carries it (int32; the vocabulary bound is checked after parsing)."""


class OpenAIModel(BaseModel):
    """Base of every request body: unknown fields are kept and never looked at."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class StreamOptions(OpenAIModel):
    include_usage: bool = True
    """Send a final chunk with `choices: []` and the usage (default true once the object is set)."""
    continuous_usage_stats: bool = False
    """Also put the running usage on every chunk (vLLM extension; needs include_usage)."""


class SamplingFields(OpenAIModel):
    """Fields shared by completions and chat completions."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0.0, le=MAX_OPENAI_TEMPERATURE)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1, le=INT32_MAX)
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    stop: str | list[str] | None = None
    stop_token_ids: list[WireTokenId] | None = None
    n: int = Field(default=1, ge=1, le=INT32_MAX)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    user: str | None = None
    # Not implemented (see UNSUPPORTED_FIELDS): accepted only at their no-op values.
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    min_p: float | None = None
    min_tokens: int | None = None
    prompt_logprobs: int | None = None
    use_beam_search: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def unsupported_field(self) -> str | None:
        """The first field set to a value prfaas cannot honour (None: every field is served)."""
        for name, no_ops in UNSUPPORTED_FIELDS.items():
            value = getattr(self, name)
            if not any(type(value) is type(ok) and value == ok for ok in no_ops):
                return name
        return None

    @property
    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def continuous_usage(self) -> bool:
        options = self.stream_options
        return options is not None and options.include_usage and options.continuous_usage_stats


UNSUPPORTED_FIELDS: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (False,),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0.0),
    "frequency_penalty": (None, 0.0),
    "repetition_penalty": (None, 1.0),
    "min_p": (None, 0.0),
    "min_tokens": (None, 0),
    "prompt_logprobs": (None,),
    "use_beam_search": (False,),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
}
"""Fields that change the output and that prfaas does not implement -> the values that leave the
output unchanged (compared with their type: `logprobs: 0` asks for logprobs, `false` does not).
Logprobs would need the workers to return them through the proto; tools and structured output need
constrained decoding."""


class CompletionRequest(SamplingFields):
    """`POST /v1/completions`; `max_tokens` defaults to 16 as in OpenAI's legacy API."""

    prompt: str | list[WireTokenId] | list[str] | list[list[WireTokenId]]


class ChatMessage(OpenAIModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(SamplingFields):
    """`POST /v1/chat/completions`; without a limit the completion may fill the context."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @property
    def requested_max_tokens(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )


def usage_json(
    num_prompt_tokens: int,
    num_completion_tokens: int,
    num_cached_tokens: int,
    prefill_cluster: str = "",
) -> dict[str, Any]:
    """OpenAI usage with vLLM's `prompt_tokens_details.cached_tokens`, plus (prfaas extension)
    `prompt_tokens_details.prefill_cluster`, the cluster that prefilled the prompt, when known."""
    details: dict[str, Any] = {"cached_tokens": num_cached_tokens}
    if prefill_cluster:
        details["prefill_cluster"] = prefill_cluster
    return {
        "prompt_tokens": num_prompt_tokens,
        "completion_tokens": num_completion_tokens,
        "total_tokens": num_prompt_tokens + num_completion_tokens,
        "prompt_tokens_details": details,
    }


def finished_usage(done: TextFinished) -> dict[str, Any]:
    return usage_json(done.num_prompt_tokens, done.num_completion_tokens, done.num_cached_tokens,
                      done.prefill_cluster)  # fmt: skip


class ResponseBuilder:
    """Builds the JSON of one response (chat or completion), streaming or not."""

    def __init__(self, chat: bool, response_id: str, model: str, created: int) -> None:
        self.chat = chat
        self.header = {
            "id": response_id,
            "object": ("chat.completion" if chat else "text_completion"),
            "created": created,
            "model": model,
        }

    def full(self, text: str, done: TextFinished) -> dict[str, Any]:
        """The non-streaming response."""
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice |= {
            "logprobs": None,
            "finish_reason": done.finish_reason,
            "stop_reason": done.stop_reason,
        }
        return {**self.header, "choices": [choice], "usage": finished_usage(done)}

    def chunk(
        self,
        text: str | None,
        *,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        role: bool = False,
    ) -> dict[str, Any]:
        """One streaming chunk with a single choice (`text` None gives an empty delta)."""
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        choice |= {"logprobs": None, "finish_reason": finish_reason}
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self.header, "object": obj, "choices": [choice], "usage": usage}

    def usage_chunk(self, done: TextFinished) -> dict[str, Any]:
        """The final `include_usage` chunk: no choices, the whole usage."""
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self.header, "object": obj, "choices": [], "usage": finished_usage(done)}
