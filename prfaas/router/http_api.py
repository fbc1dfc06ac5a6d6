"""The router's OpenAI-compatible HTTP front end (FastAPI), as a library over a backend.

`create_app` serves `POST /v1/completions`, `POST /v1/chat/completions`, `GET /v1/models`,
`GET /health` (liveness), `GET /ready` (readiness; 503 while not ready or draining),
`GET /metrics`, `GET /v1/tokenizer/<file>` (the served model's tokenizer files) and
`GET /openapi.json` (the request bodies as FastAPI derives them from
`openai_protocol.py`). Per request it:
1. parses the body (unknown fields ignored; invalid input and fields prfaas cannot honour are 400
   in the OpenAI error shape; the limits are `prfaas/request_limits.py`),
2. checks the API key, the model name, readiness and the context limit,
3. tokenizes the prompt and hands a `GenerationRequest` to the backend,
4. answers with one JSON object, or streams SSE chunks ending in `data: [DONE]`.
A client disconnect at any point aborts the request in the backend.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry

from prfaas.data import TOKENIZER_FILES
from prfaas.metrics import RouterMetrics, render
from prfaas.router.generation_backend import BackendError, GenerationBackend, GenerationRequest
from prfaas.router.http_errors import APIError, from_backend_error, install_error_handlers
from prfaas.router.http_generation import TextDelta, TextFinished, TextGeneration
from prfaas.router.http_requests import RequestBuilder
from prfaas.router.http_sse import ClientDisconnected, SSEResponse, cancel_on_disconnect
from prfaas.router.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ResponseBuilder,
    SamplingFields,
    finished_usage,
    usage_json,
)
from prfaas.router.openai_text import Tokenizer
from prfaas.security.api_keys import ApiKeys

CLIENT_CLOSED_REQUEST = 499
"""Status logged for requests whose client disconnected (nginx's convention; never sent)."""


def create_app(
    backend: GenerationBackend,
    tokenizer: Tokenizer,
    *,
    api_key: str | ApiKeys | None = None,
    metrics: RouterMetrics | None = None,
    served_model_name: str | None = None,
    tokenizer_dir: Path | None = None,
) -> FastAPI:
    """Build the HTTP app. `metrics` defaults to a `RouterMetrics` on a fresh registry;
    `served_model_name` (default `backend.model_name`) is the id `/v1/models` lists;
    `tokenizer_dir`: the served model's tokenizer directory, whose client files
    (`prfaas.data.TOKENIZER_FILES`) are served at `GET /v1/tokenizer/<file>`."""
    model_name = served_model_name or backend.model_name
    if metrics is None:
        metrics = RouterMetrics(CollectorRegistry(), model_name)
    builder = RequestBuilder(tokenizer, model_name, lambda: backend.max_context)
    app = FastAPI(title="prfaas", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    install_error_handlers(app, metrics)

    async def on_disconnect(_: Request, exc: Exception) -> Response:
        metrics.record_http_error(CLIENT_CLOSED_REQUEST)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    app.add_exception_handler(ClientDisconnected, on_disconnect)

    api_keys = ApiKeys.of(api_key)  # one key, or several revocable ones from a file

    def check_api_key(request: Request) -> None:
        if api_keys is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not api_keys.accepts(token):
            raise APIError(401, "Invalid or missing API key.")

    def check_ready() -> None:
        if not backend.ready():
            raise APIError(503, "Server is not ready (starting up or draining).")

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/ready")
    async def ready() -> Response:
        check_ready()
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        body, content_type = render(metrics.registry)
        return Response(body, media_type=content_type)

    @app.get("/v1/models", dependencies=[Depends(check_api_key)])
    async def models() -> dict[str, Any]:
        card = {
            "id": model_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "prfaas",
            "root": model_name,
            "parent": None,
            "max_model_len": backend.max_context,
            "permission": [],
        }
        return {"object": "list", "data": [card]}

    @app.get("/v1/tokenizer/{name}", dependencies=[Depends(check_api_key)])
    async def tokenizer_file(name: str) -> Response:
        """A tokenizer file of the served model, so clients count tokens as the router does."""
        path = tokenizer_dir / name if tokenizer_dir is not None else None
        if name not in TOKENIZER_FILES or path is None or not path.is_file():
            raise APIError(
                404, f"No tokenizer file {name!r}; served: {', '.join(TOKENIZER_FILES)}."
            )
        return Response(path.read_bytes(), media_type="application/json")

    @app.post("/v1/completions", dependencies=[Depends(check_api_key)])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        check_ready()
        prompt_ids = builder.completion_prompt(body)
        return await serve(request, body, prompt_ids, body.max_tokens or 16, chat=False)

    @app.post("/v1/chat/completions", dependencies=[Depends(check_api_key)])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        check_ready()
        prompt_ids = builder.chat_prompt(body)
        return await serve(request, body, prompt_ids, body.requested_max_tokens, chat=True)

    async def serve(
        request: Request,
        body: SamplingFields,
        prompt_ids: list[int],
        max_tokens: int | None,
        *,
        chat: bool,
    ) -> Response:
        arrival_s = time.monotonic()
        request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        gen_request = builder.generation_request(request_id, body, prompt_ids, max_tokens)
        generation = TextGeneration(backend, tokenizer, gen_request, metrics, arrival_s)
        response = ResponseBuilder(chat, request_id, model_name, int(time.time()))
        events = generation.events()
        if not body.stream:
            text, done = await cancel_on_disconnect(request, _collect(events))
            return JSONResponse(response.full(text, done))
        try:
            first = await cancel_on_disconnect(request, anext(events))
        except BackendError as exc:
            raise from_backend_error(exc) from exc
        return SSEResponse(_stream_chunks(first, events, response, body, gen_request))

    return app


async def _collect(events: AsyncIterator[TextDelta | TextFinished]) -> tuple[str, TextFinished]:
    """Run a whole generation; backend errors become HTTP errors (nothing was sent yet)."""
    parts: list[str] = []
    try:
        async for item in events:
            if isinstance(item, TextFinished):
                return "".join(parts), item
            parts.append(item.text)
    except BackendError as exc:
        raise from_backend_error(exc) from exc
    raise APIError(500, "generation ended without a finish event")


async def _stream_chunks(
    first: TextDelta | TextFinished,
    events: AsyncGenerator[TextDelta | TextFinished, None],
    response: ResponseBuilder,
    body: SamplingFields,
    gen_request: GenerationRequest,
) -> AsyncGenerator[dict[str, Any], None]:
    """The SSE chunks of one streamed response; an error after the start is an error event."""
    num_prompt = len(gen_request.prompt_token_ids)

    def running_usage(num_completion: int) -> dict[str, Any] | None:
        return usage_json(num_prompt, num_completion, 0) if body.continuous_usage else None

    if response.chat:
        yield response.chunk("", role=True, usage=running_usage(0))
    item = first
    try:
        while True:
            if isinstance(item, TextFinished):
                usage = finished_usage(item) if body.continuous_usage else None
                yield response.chunk(None, finish_reason=item.finish_reason, usage=usage)
                if body.include_usage:
                    yield response.usage_chunk(item)
                return
            if item.text:
                yield response.chunk(item.text, usage=running_usage(item.num_completion_tokens))
            item = await anext(events)
    except BackendError as exc:
        yield from_backend_error(exc).body()
    finally:
        await events.aclose()
