"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the HTTP status.

Client mistakes are 4xx and never 5xx, because the `openai` SDK retries 429 and 5xx.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from prfaas.metrics import RouterMetrics
from prfaas.router.backend_base import BackendError, ContextTooLong, NotReady, Overloaded

ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
MAX_MESSAGE_CHARS = 2000


class APIError(Exception):
    """An error answered in the OpenAI shape; raise it anywhere in a handler."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error_type = ERROR_TYPES.get(self.status_code, "APIError")
        message = self.message[:MAX_MESSAGE_CHARS]
        return {
            "error": {
                "message": message,
                "type": error_type,
                "param": self.param,
                "code": self.status_code,
            }
        }


def from_backend_error(exc: BackendError) -> APIError:
    """Map a backend error raised before the response started to its HTTP status."""
    if isinstance(exc, Overloaded):
        retry_after = str(max(1, math.ceil(exc.retry_after_s)))
        return APIError(429, str(exc), headers={"Retry-After": retry_after})
    if isinstance(exc, NotReady):
        return APIError(503, str(exc) or "server is not ready")
    if isinstance(exc, ContextTooLong):
        return APIError(400, str(exc), param="prompt")
    return APIError(500, f"generation failed: {exc}")


def _validation_error(exc: RequestValidationError) -> APIError:
    first = exc.errors()[0] if exc.errors() else {}
    # The location starts with "body"; the rest is the dotted path of the bad field.
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    return APIError(400, f"{param}: {message}" if param else message, param=param)


def install_error_handlers(app: FastAPI, metrics: RouterMetrics) -> None:
    """Answer every error of `app` in the OpenAI shape (validation errors as 400, not 422)."""

    def respond(error: APIError) -> JSONResponse:
        metrics.record_http_error(error.status_code)
        return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return respond(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return respond(_validation_error(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return respond(APIError(exc.status_code, str(exc.detail)))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return respond(APIError(500, f"internal error: {type(exc).__name__}"))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
