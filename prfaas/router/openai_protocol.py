"""OpenAI request bodies (as vLLM accepts them) and the JSON objects prfaas answers with.

Unknown fields are accepted and ignored (`extra="allow"`), because real clients send vLLM
extensions and fields prfaas does not implement.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prfaas.router.http_generation import TextFinished

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class OpenAIModel(BaseModel):
    """Base of every request body: unknown fields are kept and never looked at."""

    model_config = ConfigDict(extra="allow")


class StreamOptions(OpenAIModel):
    include_usage: bool = True
    """Send a final chunk with `choices: []` and the usage (default true once the object is set)."""
    continuous_usage_stats: bool = False
    """Also put the running usage on every chunk (vLLM extension; needs include_usage)."""


class SamplingFields(OpenAIModel):
    """Fields shared by completions and chat completions."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    user: str | None = None

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


class CompletionRequest(SamplingFields):
    """`POST /v1/completions`; `max_tokens` defaults to 16 as in OpenAI's legacy API."""

    prompt: str | list[int] | list[str] | list[list[int]]


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
    num_prompt_tokens: int, num_completion_tokens: int, num_cached_tokens: int
) -> dict[str, Any]:
    """OpenAI usage with vLLM's `prompt_tokens_details.cached_tokens`."""
    return {
        "prompt_tokens": num_prompt_tokens,
        "completion_tokens": num_completion_tokens,
        "total_tokens": num_prompt_tokens + num_completion_tokens,
        "prompt_tokens_details": {"cached_tokens": num_cached_tokens},
    }


def finished_usage(done: TextFinished) -> dict[str, Any]:
    return usage_json(done.num_prompt_tokens, done.num_completion_tokens, done.num_cached_tokens)


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
