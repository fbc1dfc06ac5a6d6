"""From a parsed OpenAI body to a checked `GenerationRequest` (all 400/404 input checks here).

The limits themselves live in `prfaas/request_limits.py`, shared with the gRPC entries.
"""

from __future__ import annotations

from collections.abc import Callable

from prfaas.request_limits import InvalidRequest, check_token_ids, checked_sampling, wire_seed
from prfaas.router.generation_backend import GenerationRequest
from prfaas.router.http_errors import APIError
from prfaas.router.openai_protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from prfaas.router.openai_text import Tokenizer, content_text, render_chat


class RequestBuilder:
    """Validates request bodies against the served model and turns them into backend requests."""

    def __init__(
        self, tokenizer: Tokenizer, model_name: str, max_context: int | Callable[[], int]
    ) -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name
        self._max_context = max_context

    @property
    def max_context(self) -> int:
        """Read per request when given as a callable (the router's limit follows the workers')."""
        limit = self._max_context
        return limit() if callable(limit) else limit

    def _extra_eos(self, body: SamplingFields) -> tuple[int, ...]:
        """EOS ids beyond the primary one (a checkpoint's generation_config may name several,
        e.g. <|im_end|> and <|endoftext|>): sent as stop ids, as the worker knows only the first."""
        if body.ignore_eos:
            return ()
        return tuple(getattr(self.tokenizer, "eos_token_ids", ())[1:])

    def _check_common(self, body: SamplingFields) -> None:
        if body.model is not None and body.model != self.model_name:
            raise APIError(404, f"The model `{body.model}` does not exist.", param="model")
        if body.n != 1:
            raise APIError(400, "Only n=1 is supported.", param="n")
        unsupported = body.unsupported_field()
        if unsupported is not None:
            raise APIError(
                400,
                f"`{unsupported}` is not supported by this server; leave it unset.",
                param=unsupported,
            )

    def _encode(self, text: str, param: str) -> list[int]:
        """Tokenize client text; text that is not valid Unicode (a lone surrogate such as
        "\\ud800", which JSON escapes can carry) is the client's mistake, not a server error."""
        try:
            return self.tokenizer.encode(text)
        except UnicodeEncodeError as exc:
            raise APIError(
                400,
                f"{param} is not valid Unicode: {exc.reason} at character {exc.start}.",
                param=param,
            ) from exc

    def completion_prompt(self, body: CompletionRequest) -> list[int]:
        """Prompt ids of a completion request: text, a single-element list, or token ids."""
        self._check_common(body)
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            if len(prompt) != 1:
                raise APIError(
                    400, "Batched prompts are not supported; send one prompt.", param="prompt"
                )
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = self._encode(prompt, "prompt")
        else:
            # Token ids (the request's own, or a batch of one's); the protocol admits no other list
            # here, and the filter tells the type checker so: a mixed list is refused.
            ids = [i for i in prompt if isinstance(i, int)]
            if len(ids) != len(prompt):
                raise APIError(400, "The prompt must be text or token ids.", param="prompt")
            try:
                check_token_ids(ids, self.tokenizer.vocab_size, "prompt")
            except InvalidRequest as exc:
                raise APIError(400, exc.message, param=exc.param) from exc
        if not ids:
            raise APIError(400, "The prompt is empty.", param="prompt")
        return ids

    def chat_prompt(self, body: ChatCompletionRequest) -> list[int]:
        """Prompt ids of a chat request, rendered with the plain chat template."""
        self._check_common(body)
        # A checkpoint's tokenizer brings its own chat template (prfaas/tokenizer/hf_tokenizer.py).
        render = getattr(self.tokenizer, "render_chat", None)
        try:
            if render is not None:
                text = render(
                    [{"role": m.role, "content": content_text(m.content)} for m in body.messages]
                )
            else:
                text = render_chat([(m.role, m.content) for m in body.messages])
        except ValueError as exc:
            raise APIError(400, str(exc), param="messages") from exc
        return self._encode(text, "messages")

    def generation_request(
        self,
        request_id: str,
        body: SamplingFields,
        prompt_ids: list[int],
        max_tokens: int | None,
    ) -> GenerationRequest:
        """Check the context limit and build the backend request.

        `max_tokens` None means "up to the context limit" (the chat default)."""
        num_prompt = len(prompt_ids)
        room = self.max_context - num_prompt
        if room <= 0 or (max_tokens is not None and max_tokens > room):
            asked = f"{num_prompt} in the prompt"
            if max_tokens is not None:
                asked += f", {max_tokens} for the completion"
            raise APIError(
                400,
                f"This model's maximum context length is {self.max_context} tokens. "
                f"However, you requested {num_prompt + (max_tokens or 0)} tokens ({asked}).",
                param="prompt" if room <= 0 else "max_tokens",
            )
        try:
            sampling = checked_sampling(
                self.tokenizer.vocab_size,
                temperature=1.0 if body.temperature is None else body.temperature,
                top_p=1.0 if body.top_p is None else body.top_p,
                top_k=0 if body.top_k is None or body.top_k < 0 else body.top_k,
                seed=None if body.seed is None else wire_seed(body.seed),
                max_tokens=room if max_tokens is None else max_tokens,
                ignore_eos=body.ignore_eos,
                stop_token_ids=tuple(body.stop_token_ids or ()) + self._extra_eos(body),
            )
        except InvalidRequest as exc:
            raise APIError(400, exc.message, param=exc.param) from exc
        return GenerationRequest(request_id, tuple(prompt_ids), sampling, body.stop_strings)
